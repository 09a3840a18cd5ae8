-- Small helpers every domain uses, applied before the domains (schema triggers call them too):
-- the project's one sha256, base64url, and the one read of a Vault secret's value.

-- The one sha256 of the project: of a text's UTF-8 bytes. Tool definitions, interaction
-- arguments, API keys, OAuth states and PKCE challenges are all hashed through it.
-- Both are plpgsql, not sql: with their own search_path they are never inlined, and a plpgsql
-- function keeps its plan across calls where a sql one plans its body again on every call.
create function private.sha256(p_text text) returns bytea
language plpgsql immutable strict
set search_path = pg_catalog, pg_temp
as $$ begin return pg_catalog.sha256(pg_catalog.convert_to(p_text, 'UTF8')); end $$;
comment on function private.sha256(text) is 'The sha256 of a text (UTF-8), as bytes: the project''s one sha256.';

-- The same as lower-case hex, as the tables that keep a hash as text store it.
create function private.sha256_hex(p_text text) returns text
language plpgsql immutable strict
set search_path = pg_catalog, pg_temp
as $$ begin return pg_catalog.encode(private.sha256(p_text), 'hex'); end $$;
comment on function private.sha256_hex(text) is 'The sha256 of a text (UTF-8), as hex.';

-- base64url without padding (RFC 4648 §5), as PKCE, OAuth states and API keys use it.
create function private.base64url(p_bytes bytea) returns text
language sql immutable strict
set search_path = pg_catalog, pg_temp
as $$ select pg_catalog.rtrim(pg_catalog.translate(pg_catalog.encode(p_bytes, 'base64'), E'+/\n', '-_'), '=') $$;
comment on function private.base64url(bytea) is 'Bytes as unpadded base64url text (RFC 4648 section 5).';

-- The plain text of a Vault secret: how every definer function reads a token, a credential or a
-- secret configuration field it holds by id. Who may have it is decided by the caller's rule.
create function private.vault_read(p_secret_id uuid) returns text
language sql stable security definer
set search_path = pg_catalog, pg_temp
as $$ select s.decrypted_secret from vault.decrypted_secrets s where s.id = p_secret_id $$;
comment on function private.vault_read(uuid) is 'The plain text of a Vault secret, or null (definer functions only).';
revoke execute on function private.vault_read(uuid) from public, anon, authenticated, service_role;

-- Definer functions call these as their owner; the catalog's hashing trigger runs with the
-- writer's rights, so service_role needs the hash (db/policies/catalog.sql).
revoke execute on function private.sha256(text), private.sha256_hex(text), private.base64url(bytea)
  from public, anon, authenticated, service_role;
grant execute on function private.sha256(text), private.sha256_hex(text) to service_role;
