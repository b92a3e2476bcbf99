-- bj_api_sync: a neutralized copy of a database must not push to real systems.
UPDATE bj_api_sync_config
   SET active = false,
       auth_password = NULL,
       bearer_token = NULL,
       api_key_value = NULL,
       oauth2_client_secret = NULL,
       oauth2_access_token = NULL,
       oauth2_token_expires_at = NULL,
       signing_secret = NULL,
       signing_secret_previous = NULL,
       client_cert = NULL,
       client_key = NULL;
UPDATE bj_api_sync_header
   SET value = NULL
 WHERE lower(key) IN ('authorization', 'proxy-authorization', 'cookie')
    OR (lower(key) ~ '(token|secret|key|signature|password|auth)'
        AND lower(key) <> 'idempotency-key');
UPDATE bj_api_sync_param
   SET value = NULL
 WHERE lower(key) IN ('sig', 'pwd', 'pass', 'auth', 'authorization')
    OR lower(key) ~ '(token|secret|key|signature|password|passwd|credential)';
UPDATE bj_api_sync_delivery
   SET state = 'cancelled', next_attempt_at = NULL
 WHERE state IN ('pending', 'retrying');
