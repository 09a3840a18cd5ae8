/**
 * Each agent's grants (scope, the tools the database says it may use now, expiry, who granted
 * it and when), the grant dialog with a tool picker from the server's pinned manifest
 * (read-only tools marked), revoke; and the tool definitions servers presented that differ
 * from the pinned ones, side by side, for an admin to approve.
 */
import { useState } from 'react';
import type { PermissionScope } from '../../../client/src/schemas.ts';
import { useConsole } from '../context.ts';
import { JsonDiff } from '../diff.tsx';
import { rows, rpc, supabase } from '../supabase.ts';
import type { Agent, Drift, Grant, Instance, Tool } from '../types.ts';
import { ErrorNote, Mutating, Safe, Section, short, useAction, useLoad, when } from '../ui.tsx';
import { Annotations } from './Servers.tsx';
import { ApiKeys } from './ApiKeys.tsx';

const GRANT_COLUMNS = 'id,agent_id,server_instance_id,permission_scope,allowed_tools,expires_at,granted_by,granted_at,revoked_at,revoked_by,revoke_reason';

export function AgentsScreen() {
  const { org, isAdmin, isMember, userId } = useConsole();
  const base = useLoad(async () => {
    const [agents, servers, live] = await Promise.all([
      rows<Agent>(supabase.from('agents').select('id,name,description,user_id,is_active').eq('organization_id', org.id).order('name')),
      rows<Pick<Instance, 'id' | 'display_name' | 'status' | 'instance_name_on_toolbox'>>(supabase.from('account_tool_instances').select('id,display_name,status,instance_name_on_toolbox').eq('organization_id', org.id).neq('status', 'removed').order('display_name')),
      rows<Pick<Grant, 'agent_id'>>(supabase.from('agent_mcp_server_access').select('agent_id').eq('organization_id', org.id).is('revoked_at', null)),
    ]);
    const counts = new Map<string, number>();
    for (const g of live) counts.set(g.agent_id, (counts.get(g.agent_id) ?? 0) + 1);
    return { agents, servers, counts };
  }, [org.id]);
  const [selected, setSelected] = useState<string>();
  const agents = base.data?.agents ?? [];
  const agent = agents.find((a) => a.id === selected) ?? agents[0];
  return (
    <div data-screen="agents" data-ready={base.data ? '' : undefined}>
      <ErrorNote error={base.error} />
      <div className="split">
        <aside>
          <h2>Agents</h2>
          <ul className="agents">
            {agents.map((a) => (
              <li key={a.id} className={a === agent ? 'active' : ''}>
                <Safe data-agent={a.name} onClick={() => setSelected(a.id)}>
                  {a.name}{a.user_id === userId ? ' (yours)' : ''} <small>{base.data?.counts.get(a.id) ?? 0} live grants{a.is_active ? '' : ', inactive'}</small>
                </Safe>
              </li>
            ))}
          </ul>
        </aside>
        <div className="detail">
          {agent && base.data ? <AgentGrants key={agent.id} agent={agent} servers={base.data.servers} onChange={base.reload} /> : <p>No agents in this organization yet.</p>}
          {agent && (isAdmin || (isMember && agent.user_id === userId)) ? <ApiKeys key={`keys-${agent.id}`} agent={agent} /> : null}
        </div>
      </div>
      {isAdmin ? <DriftSection servers={base.data?.servers} /> : null}
    </div>
  );
}

function grantState(g: Grant, now = Date.now()): string {
  if (g.revoked_at) return `revoked ${when(g.revoked_at)}${g.revoke_reason ? ` (${g.revoke_reason})` : ''}`;
  if (g.expires_at && new Date(g.expires_at).getTime() <= now) return 'expired';
  return 'live';
}

function AgentGrants({ agent, servers, onChange }: { agent: Agent; servers: Pick<Instance, 'id' | 'display_name' | 'status'>[]; onChange: () => void }) {
  const { userId, isAdmin, isMember } = useConsole();
  const mayManage = isAdmin || (isMember && agent.user_id === userId);
  const data = useLoad(async () => {
    const [grants, effective] = await Promise.all([
      rows<Grant>(supabase.from('agent_mcp_server_access').select(GRANT_COLUMNS).eq('agent_id', agent.id).order('granted_at', { ascending: false }).limit(50)),
      // What the database says the agent may use now, with each grant's effective tools.
      mayManage ? rpc.get_agent_mcp_servers({ p_agent_id: agent.id }) : Promise.resolve(undefined),
    ]);
    return { grants, effective: effective ? new Map(effective.map((s) => [s.grant_id, s.allowed_tools])) : undefined };
  }, [agent.id, mayManage]);
  const action = useAction();
  const [granting, setGranting] = useState(false);
  const serverName = new Map(servers.map((s) => [s.id, s.display_name]));
  const reload = () => { data.reload(); onChange(); };
  return (
    <Section title={`Grants of ${agent.name}`} actions={mayManage ? <Mutating data-action="open-grant" onClick={() => setGranting(true)}>Grant access</Mutating> : null}>
      <p className="muted">{agent.description} · owner <code>{short(agent.user_id)}</code>{agent.user_id === userId ? ' (you)' : ''}</p>
      <ErrorNote error={data.error ?? action.error} />
      {granting ? <GrantDialog agent={agent} servers={servers} onClose={() => setGranting(false)} onGranted={() => { setGranting(false); reload(); }} /> : null}
      <table className="grants">
        <thead><tr><th>Server</th><th>Scope</th><th>Tools it may use now</th><th>Expires</th><th>Granted by</th><th>Granted</th><th>State</th><th></th></tr></thead>
        <tbody>
          {(data.data?.grants ?? []).map((g) => {
            const state = grantState(g);
            const tools = data.data?.effective?.get(g.id);
            return (
              <tr key={g.id} data-grant={g.id} data-state={state === 'live' ? 'live' : 'history'}>
                <td>{serverName.get(g.server_instance_id) ?? short(g.server_instance_id)}</td>
                <td><span className="badge">{g.permission_scope}</span></td>
                <td data-tools="">
                  {tools ? tools.map((t) => <code key={t} className="tool">{t}</code>)
                    : state !== 'live' ? '—'
                    : data.data?.effective ? <span className="muted">none now (server not running)</span>
                    : <span className="muted">{g.permission_scope === 'custom' ? g.allowed_tools?.join(', ') : g.permission_scope === 'read_only' ? 'the read-only tools' : 'every tool'}</span>}
                </td>
                <td>{g.expires_at ? when(g.expires_at) : 'never'}</td>
                <td><code>{short(g.granted_by)}</code>{g.granted_by === userId ? ' (you)' : ''}</td>
                <td>{when(g.granted_at)}</td>
                <td>{state}</td>
                <td>
                  {mayManage && state === 'live' ? (
                    <Mutating data-action="revoke" onClick={async () => { if (await action.run('revoke', () => rpc.revoke_agent_mcp_access({ p_agent_id: agent.id, p_server_instance_id: g.server_instance_id }))) reload(); }}>Revoke</Mutating>
                  ) : null}
                </td>
              </tr>
            );
          })}
        </tbody>
      </table>
      {data.data && data.data.grants.length === 0 ? <p>No grants yet.</p> : null}
    </Section>
  );
}

function GrantDialog({ agent, servers, onClose, onGranted }: { agent: Agent; servers: Pick<Instance, 'id' | 'display_name' | 'status'>[]; onClose: () => void; onGranted: () => void }) {
  const usable = servers.filter((s) => s.status !== 'removing');
  const [serverId, setServerId] = useState(usable[0]?.id ?? '');
  const [scope, setScope] = useState<PermissionScope>('read_only');
  const [picked, setPicked] = useState<string[]>([]);
  const [expires, setExpires] = useState('');
  const manifest = useLoad(async () => (serverId ? (await rows<{ pinned_manifest: Tool[] }>(supabase.from('account_tool_instances').select('pinned_manifest').eq('id', serverId)))[0]?.pinned_manifest ?? [] : []), [serverId]);
  const action = useAction();
  const tools = manifest.data ?? [];
  return (
    <form className="dialog" role="dialog" aria-label="Grant access" onSubmit={async (e) => {
      e.preventDefault();
      const ok = await action.run('grant', () => rpc.grant_agent_mcp_access({
        p_agent_id: agent.id, p_server_instance_id: serverId, p_permission_scope: scope,
        ...(scope === 'custom' ? { p_allowed_tools: picked } : {}),
        ...(expires ? { p_expires_at: new Date(expires).toISOString() } : {}),
      }));
      if (ok) onGranted();
    }}>
      <h3>Grant {agent.name} access to an MCP server</h3>
      <label>Server
        <select aria-label="Server" value={serverId} onChange={(e) => { setServerId(e.target.value); setPicked([]); }}>
          {usable.map((s) => <option key={s.id} value={s.id}>{s.display_name} ({s.status})</option>)}
        </select>
      </label>
      <fieldset className="scopes">
        <legend>Scope</legend>
        {(['read_only', 'full_access', 'custom'] as const).map((s) => (
          <label key={s}><input type="radio" name="scope" value={s} checked={scope === s} onChange={() => setScope(s)} /> {s.replace('_', ' ')}</label>
        ))}
      </fieldset>
      <fieldset className="picker" data-picker="">
        <legend>Tools {scope === 'custom' ? '(pick)' : scope === 'read_only' ? '(the read-only ones)' : '(all)'}</legend>
        {tools.map((t) => {
          const ro = t.annotations?.readOnlyHint === true;
          const included = scope === 'full_access' || (scope === 'read_only' && ro) || (scope === 'custom' && picked.includes(t.name));
          return (
            <label key={t.name} className={included ? 'included' : ''} data-tool={t.name}>
              <input type="checkbox" disabled={scope !== 'custom'} checked={included}
                onChange={(e) => setPicked(e.target.checked ? [...picked, t.name] : picked.filter((n) => n !== t.name))} />
              <code>{t.name}</code> <Annotations tool={t} />
            </label>
          );
        })}
      </fieldset>
      <label>Expires (optional) <input type="datetime-local" value={expires} onChange={(e) => setExpires(e.target.value)} /></label>
      <ErrorNote error={action.error ?? manifest.error} />
      <div className="buttons">
        <button type="submit" data-mutates="" disabled={!serverId || !!action.busy}>{action.busy ? 'Granting…' : 'Grant'}</button>
        <Safe onClick={onClose}>Cancel</Safe>
      </div>
    </form>
  );
}

function DriftSection({ servers }: { servers?: Pick<Instance, 'id' | 'display_name'>[] }) {
  const { org } = useConsole();
  const data = useLoad(async () => {
    const drift = await rows<Drift>(supabase.from('mcp_tool_drift').select('id,server_instance_id,tool_name,pinned_sha256,presented_sha256,presented_definition,first_seen_at,last_seen_at,seen_count,approved_at').eq('organization_id', org.id).is('approved_at', null).order('first_seen_at'));
    const ids = [...new Set(drift.map((d) => d.server_instance_id))];
    const pinned = ids.length ? await rows<{ id: string; pinned_manifest: Tool[] }>(supabase.from('account_tool_instances').select('id,pinned_manifest').in('id', ids)) : [];
    return { drift, pinned: new Map(pinned.map((p) => [p.id, p.pinned_manifest])) };
  }, [org.id]);
  const action = useAction();
  const name = new Map((servers ?? []).map((s) => [s.id, s.display_name]));
  // A removed server presents nothing any more: its old sightings need no approval.
  const pending = servers ? (data.data?.drift ?? []).filter((d) => name.has(d.server_instance_id)) : [];
  return (
    <Section title="Changed tool definitions awaiting approval">
      <ErrorNote error={data.error ?? action.error} />
      {data.data && servers && pending.length === 0 ? <p data-drift-empty="">No server presents a tool that differs from its pinned definition.</p> : null}
      {pending.map((d) => {
        const pinned = data.data?.pinned.get(d.server_instance_id)?.find((t) => t.name === d.tool_name);
        const { sha256: _ignored, ...pinnedDefinition } = pinned ?? { sha256: undefined };
        return (
          <div key={d.id} className="card" data-drift={d.tool_name} data-server={d.server_instance_id}>
            <div className="card-head">
              <strong>{name.get(d.server_instance_id) ?? short(d.server_instance_id)}</strong> · tool <code>{d.tool_name}</code>
              <span> · presented {d.seen_count}× since {when(d.first_seen_at)}; denied until approved</span>
              <Mutating data-action="approve" onClick={async () => {
                if (await action.run('approve', () => rpc.approve_mcp_tool_definition({ p_server_instance_id: d.server_instance_id, p_tool_name: d.tool_name, p_presented_sha256: d.presented_sha256 }))) data.reload();
              }}>Approve the new definition</Mutating>
            </div>
            <JsonDiff before={pinnedDefinition} after={d.presented_definition} leftTitle={`pinned (${(d.pinned_sha256 ?? '').slice(0, 12)})`} rightTitle={`presented (${d.presented_sha256.slice(0, 12)})`} />
          </div>
        );
      })}
    </Section>
  );
}
