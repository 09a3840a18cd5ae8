/**
 * An agent's API keys for the MCP gateway: create (the key is shown once), list (prefix,
 * expiry, last use, state), revoke. Built against the gateway issue's RPCs
 * (create_agent_api_key, list_agent_api_keys, revoke_agent_api_key); where the database does
 * not have them yet (PGRST202), the panel says so instead of failing.
 */
import { useState } from 'react';
import { untypedRpc } from '../supabase.ts';
import type { Agent } from '../types.ts';
import { ErrorNote, Mutating, Safe, Section, short, useAction, useLoad, when } from '../ui.tsx';

interface ApiKey { key_id: string; name: string; prefix: string; created_by: string | null; created_at: string; expires_at: string | null; last_used_at: string | null; revoked_at: string | null; state: string }
interface NewKey { key_id: string; api_key: string; prefix: string; expires_at: string | null }

export function ApiKeys({ agent }: { agent: Agent }) {
  const keys = useLoad(() => untypedRpc<ApiKey[]>('list_agent_api_keys', { p_agent_id: agent.id }), [agent.id]);
  const action = useAction();
  const [name, setName] = useState('');
  const [expires, setExpires] = useState('');
  const [created, setCreated] = useState<NewKey>();
  if (keys.error?.code === 'PGRST202') {
    return <Section title="API keys for the gateway"><p className="muted" data-api-keys="unavailable">This database has no agent API keys yet (they come with the MCP gateway).</p></Section>;
  }
  return (
    <Section title="API keys for the gateway">
      <ErrorNote error={keys.error ?? action.error} />
      {created ? (
        <div className="once" data-new-key="">
          <strong>{created.prefix}…: copy the key now, it is not shown again.</strong>
          <code className="key">{created.api_key}</code>
          <Safe onClick={() => setCreated(undefined)}>Done</Safe>
        </div>
      ) : null}
      <table className="keys">
        <thead><tr><th>Name</th><th>Prefix</th><th>Created</th><th>Expires</th><th>Last used</th><th>State</th><th></th></tr></thead>
        <tbody>
          {(keys.data ?? []).map((k) => (
            <tr key={k.key_id} data-key={k.prefix} data-state={k.state}>
              <td>{k.name}</td><td><code>{k.prefix}</code></td><td>{when(k.created_at)} by <code>{short(k.created_by)}</code></td>
              <td>{k.expires_at ? when(k.expires_at) : 'never'}</td><td>{when(k.last_used_at)}</td><td>{k.state}</td>
              <td>{k.state === 'active' ? <Mutating data-action="revoke-key" onClick={async () => { if (await action.run('revoke key', () => untypedRpc('revoke_agent_api_key', { p_key_id: k.key_id }))) keys.reload(); }}>Revoke</Mutating> : null}</td>
            </tr>
          ))}
        </tbody>
      </table>
      <form className="inline" onSubmit={async (e) => {
        e.preventDefault();
        let made: NewKey | undefined;
        const ok = await action.run('create key', async () => {
          made = (await untypedRpc<NewKey[]>('create_agent_api_key', { p_agent_id: agent.id, p_name: name, ...(expires ? { p_expires_at: new Date(expires).toISOString() } : {}) }))[0];
        });
        if (ok && made) { setCreated(made); setName(''); setExpires(''); keys.reload(); }
      }}>
        <label>Key name <input value={name} onChange={(e) => setName(e.target.value)} required placeholder="production runtime" /></label>
        <label>Expires (optional) <input type="datetime-local" value={expires} onChange={(e) => setExpires(e.target.value)} /></label>
        <button type="submit" data-mutates="">Create a key</button>
      </form>
    </Section>
  );
}
