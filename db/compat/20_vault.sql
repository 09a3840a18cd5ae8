-- compat-when: select to_regnamespace('vault') is null
-- Supabase Vault's SQL API (vault.secrets, vault.decrypted_secrets, vault.create_secret,
-- vault.update_secret) for a plain PostgreSQL. Secrets are encrypted at rest with a root key
-- read from a file in the data directory (vault_root.key, written by scripts/stack.sh), never
-- from a table, as Supabase keeps its key outside the database.

create schema vault;
revoke all on schema vault from public;

create table vault.secrets (
  id uuid primary key default gen_random_uuid(),
  name text,
  description text not null default '',
  secret text not null,
  key_id uuid,
  nonce bytea default extensions.gen_random_bytes(16),
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now()
);
create unique index secrets_name_idx on vault.secrets (name) where name is not null;
comment on table vault.secrets is 'Encrypted secrets (ciphertext only). Stand-in for Supabase Vault (db/compat).';
revoke all on vault.secrets from public;

-- The root key, read from the server's data directory; only this definer function can read it.
create function vault._root_key() returns text
language plpgsql stable security definer set search_path = pg_catalog, pg_temp
as $$
begin
  return btrim(pg_catalog.pg_read_file('vault_root.key'), E' \n');
exception when undefined_file then
  raise exception using errcode = '58P01', message = 'vault root key file vault_root.key is missing from the data directory',
    hint = 'the cluster was not created by scripts/stack.sh; recreate it with scripts/stack.sh reset';
end $$;
revoke all on function vault._root_key() from public;

create function vault._encrypt(p_plain text, p_nonce bytea) returns text
language sql stable security definer set search_path = pg_catalog, pg_temp
as $$
  select pg_catalog.encode(extensions.pgp_sym_encrypt(p_plain, vault._root_key() || pg_catalog.encode(p_nonce, 'hex'),
                                                      'cipher-algo=aes256'), 'base64')
$$;
revoke all on function vault._encrypt(text, bytea) from public;

create function vault._decrypt(p_cipher text, p_nonce bytea) returns text
language sql stable security definer set search_path = pg_catalog, pg_temp
as $$
  select extensions.pgp_sym_decrypt(pg_catalog.decode(p_cipher, 'base64'), vault._root_key() || pg_catalog.encode(p_nonce, 'hex'))
$$;
revoke all on function vault._decrypt(text, bytea) from public;

create function vault.create_secret(
  new_secret text,
  new_name text default null,
  new_description text default '',
  new_key_id uuid default null
) returns uuid
language plpgsql volatile security definer set search_path = pg_catalog, pg_temp
as $$
declare
  v_nonce bytea := extensions.gen_random_bytes(16);
  v_id uuid;
begin
  insert into vault.secrets (name, description, secret, key_id, nonce)
  values (new_name, coalesce(new_description, ''), vault._encrypt(new_secret, v_nonce), new_key_id, v_nonce)
  returning id into v_id;
  return v_id;
end $$;

create function vault.update_secret(
  secret_id uuid,
  new_secret text default null,
  new_name text default null,
  new_description text default null,
  new_key_id uuid default null
) returns void
language plpgsql volatile security definer set search_path = pg_catalog, pg_temp
as $$
declare
  v_nonce bytea := extensions.gen_random_bytes(16);
begin
  update vault.secrets s
     set secret = case when new_secret is null then s.secret else vault._encrypt(new_secret, v_nonce) end,
         nonce = case when new_secret is null then s.nonce else v_nonce end,
         name = coalesce(new_name, s.name),
         description = coalesce(new_description, s.description),
         key_id = coalesce(new_key_id, s.key_id),
         updated_at = now()
   where s.id = secret_id;
end $$;

create view vault.decrypted_secrets as
  select s.id, s.name, s.description, s.secret,
         vault._decrypt(s.secret, s.nonce) as decrypted_secret,
         s.key_id, s.nonce, s.created_at, s.updated_at
    from vault.secrets s;
comment on view vault.decrypted_secrets is 'Secrets with their plain text; readable only by the database owner and service_role.';

revoke all on vault.decrypted_secrets from public;
revoke all on function vault.create_secret(text, text, text, uuid) from public;
revoke all on function vault.update_secret(uuid, text, text, text, uuid) from public;
grant usage on schema vault to service_role;
grant select, delete on vault.secrets, vault.decrypted_secrets to service_role;
grant execute on function vault.create_secret(text, text, text, uuid), vault.update_secret(uuid, text, text, text, uuid),
  vault._decrypt(text, bytea) to service_role;
