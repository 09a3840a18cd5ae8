-- OAuth sign-in flows are private: no API role reads or writes them; the flow functions
-- (db/functions/oauth_flow.sql) are the only way in.
revoke all on private.oauth_authorization_flows from public, anon, authenticated, service_role;
