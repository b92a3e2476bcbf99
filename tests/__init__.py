from . import test_payload
from . import test_send
from . import test_bad_input
from . import test_actions
from . import test_outbox
from . import test_auth
