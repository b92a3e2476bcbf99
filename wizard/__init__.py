from . import bj_api_sync_preview
from . import bj_api_sync_automate
