/**
 * The signed-in user's OAuth connections (GitHub, Google, Microsoft, Slack, ...): status,
 * scopes, expiry, how many agent permissions use each; connect and disconnect through the
 * `mcp-auth-manager` Edge Function (routes of the functions issue: POST /start
 * {provider, redirect_uri} -> {authorization_url}; POST /callback {state, code, redirect_uri};
 * POST /disconnect {connection_id}). The list is the database's (get_user_oauth_connections);
 * where the function is not deployed (locally), connect and disconnect show its absence.
 */
import { useEffect, useState } from 'react';
import { useConsole } from '../context.ts';
import { callFunction, rows, rpc, supabase } from '../supabase.ts';
import { ErrorNote, Mutating, Section, useAction, useLoad, when } from '../ui.tsx';

interface Provider { name: string; display_name: string; default_scopes: string[]; client_id: string | null }

export function ConnectionsScreen() {
  const { userId, isMember } = useConsole();
  const data = useLoad(async () => {
    const [connections, providers] = await Promise.all([
      rpc.get_user_oauth_connections({ p_user_id: userId }),
      rows<Provider>(supabase.from('oauth_providers').select('name,display_name,default_scopes,client_id').order('display_name')),
    ]);
    return { connections, providers };
  }, [userId]);
  const action = useAction();
  const redirectUri = `${window.location.origin}/connections`;

  // Back from the provider: finish the sign-in once, then drop code and state from the URL.
  const [returned] = useState(() => new URLSearchParams(window.location.search));
  useEffect(() => {
    const code = returned.get('code');
    const state = returned.get('state');
    if (!code || !state) return;
    window.history.replaceState(null, '', '/connections');
    void action.run('callback', () => callFunction('mcp-auth-manager', 'callback', { state, code, redirect_uri: redirectUri })).then(data.reload);
  }, [returned]);

  const connected = new Set((data.data?.connections ?? []).filter((c) => c.status !== 'revoked').map((c) => c.provider));
  return (
    <div data-screen="connections" data-ready={data.data ? '' : undefined}>
      <Section title="Your OAuth connections">
        <ErrorNote error={data.error ?? action.error} />
        <table>
          <thead><tr><th>Provider</th><th>Account</th><th>Status</th><th>Scopes</th><th>Token expires</th><th>Agents using it</th><th></th></tr></thead>
          <tbody>
            {(data.data?.connections ?? []).map((c) => (
              <tr key={c.connection_id} data-connection={c.provider} data-status={c.status}>
                <td>{c.provider_display_name}</td><td>{c.account_label || c.provider_account_id}</td>
                <td><span className={`badge status-${c.status === 'active' ? 'running' : 'failed'}`}>{c.status}</span>{c.last_error ? <span className="words"> {c.last_error}</span> : null}</td>
                <td>{c.scopes.map((s) => <code key={s} className="tool">{s}</code>)}</td>
                <td>{when(c.expires_at)}</td><td>{c.live_agent_permissions}</td>
                <td>{c.status !== 'revoked' && isMember ? <Mutating data-action="disconnect" onClick={async () => { if (await action.run('disconnect', () => callFunction('mcp-auth-manager', 'disconnect', { connection_id: c.connection_id }))) data.reload(); }}>Disconnect</Mutating> : null}</td>
              </tr>
            ))}
          </tbody>
        </table>
        {data.data && data.data.connections.length === 0 ? <p>No connections yet.</p> : null}
      </Section>
      {isMember ? (
        <Section title="Connect an account">
          <div className="inline">
            {(data.data?.providers ?? []).filter((p) => !connected.has(p.name)).map((p) => (
              <Mutating key={p.name} data-action="connect" data-provider={p.name} onClick={() => action.run('connect', async () => {
                const started = await callFunction<{ authorization_url: string }>('mcp-auth-manager', 'start', { provider: p.name, redirect_uri: redirectUri });
                window.location.assign(started.authorization_url);
              })}>Connect {p.display_name}</Mutating>
            ))}
          </div>
        </Section>
      ) : null}
    </div>
  );
}
