/**
 * The audit trail with filters (who, what, when), the point-in-time question asked of the
 * database (agents_with_tool_access_at: which agents could call tool X of server Y at time T,
 * through which grant), and usage per agent and per server (calls, failures, latency) from
 * the connection statistics the runtimes record.
 */
import { useState } from 'react';
import { useConsole } from '../context.ts';
import { BarChart } from '../chart.tsx';
import { rows, rpc, supabase } from '../supabase.ts';
import type { Agent, AuditRow, Instance, Tool, Usage } from '../types.ts';
import { ErrorNote, Safe, Section, short, useAction, useLoad, when } from '../ui.tsx';

const ACTIONS = ['', 'mcp_grant.', 'membership.', 'instance.', 'tool.', 'toolbox', 'mcp_credential.', 'oauth_'];

export function AuditScreen() {
  const { org, isAdmin } = useConsole();
  const names = useLoad(async () => {
    const [agents, servers] = await Promise.all([
      rows<Pick<Agent, 'id' | 'name'>>(supabase.from('agents').select('id,name').eq('organization_id', org.id).order('name')),
      rows<Pick<Instance, 'id' | 'display_name' | 'status'>>(supabase.from('account_tool_instances').select('id,display_name,status').eq('organization_id', org.id).neq('status', 'removed').order('display_name')),
    ]);
    return { agents, servers };
  }, [org.id]);
  return (
    <div data-screen="audit" data-ready={names.data ? '' : undefined}>
      <ErrorNote error={names.error} />
      {isAdmin ? <AuditTrail /> : <Section title="Audit trail"><p className="muted">The audit trail is for the organization's admins and owners.</p></Section>}
      {isAdmin && names.data ? <PointInTime servers={names.data.servers} /> : null}
      <UsageCharts agents={names.data?.agents ?? []} servers={names.data?.servers ?? []} />
    </div>
  );
}

function AuditTrail() {
  const { org } = useConsole();
  const [filters, setFilters] = useState({ actor: '', action: '', from: '', to: '' });
  const [applied, setApplied] = useState(filters);
  const trail = useLoad(() => {
    let q = supabase.from('audit_log').select('id,occurred_at,actor_id,actor_role,action,entity_type,entity_id,before,after,reason,cause').eq('organization_id', org.id);
    if (applied.actor) q = q.eq('actor_id', applied.actor);
    if (applied.action) q = q.like('action', `${applied.action}*`);
    if (applied.from) q = q.gte('occurred_at', new Date(applied.from).toISOString());
    if (applied.to) q = q.lte('occurred_at', new Date(applied.to).toISOString());
    return rows<AuditRow>(q.order('occurred_at', { ascending: false }).limit(100));
  }, [org.id, applied]);
  return (
    <Section title="Audit trail" actions={<Safe onClick={trail.reload}>Refresh</Safe>}>
      <form className="inline filters" onSubmit={(e) => { e.preventDefault(); setApplied(filters); }}>
        <label>Who (user id) <input value={filters.actor} onChange={(e) => setFilters({ ...filters, actor: e.target.value.trim() })} size={36} /></label>
        <label>What
          <select value={filters.action} onChange={(e) => setFilters({ ...filters, action: e.target.value })}>
            {ACTIONS.map((a) => <option key={a} value={a}>{a ? `${a}…` : 'anything'}</option>)}
          </select>
        </label>
        <label>From <input type="datetime-local" value={filters.from} onChange={(e) => setFilters({ ...filters, from: e.target.value })} /></label>
        <label>To <input type="datetime-local" value={filters.to} onChange={(e) => setFilters({ ...filters, to: e.target.value })} /></label>
        <button type="submit" data-safe="">Filter</button>
      </form>
      <ErrorNote error={trail.error} />
      <table className="audit">
        <thead><tr><th>When</th><th>Who</th><th>What</th><th>On</th><th>Why</th></tr></thead>
        <tbody>
          {(trail.data ?? []).map((r) => (
            <tr key={r.id} data-action={r.action}>
              <td>{when(r.occurred_at)}</td>
              <td><code>{short(r.actor_id)}</code> <small>{r.actor_role}</small></td>
              <td>{r.action}</td>
              <td>{r.entity_type} <code>{short(r.entity_id)}</code></td>
              <td>{[r.reason, r.cause !== 'user_action' ? r.cause : null].filter(Boolean).join(' · ')}</td>
            </tr>
          ))}
        </tbody>
      </table>
    </Section>
  );
}

function PointInTime({ servers }: { servers: Pick<Instance, 'id' | 'display_name'>[] }) {
  const [serverId, setServerId] = useState(servers[0]?.id ?? '');
  const [tool, setTool] = useState('');
  const [at, setAt] = useState(() => new Date().toISOString());
  const manifest = useLoad(async () => (serverId ? (await rows<{ pinned_manifest: Tool[] }>(supabase.from('account_tool_instances').select('pinned_manifest').eq('id', serverId)))[0]?.pinned_manifest ?? [] : []), [serverId]);
  const action = useAction();
  const [answer, setAnswer] = useState<Awaited<ReturnType<typeof rpc.agents_with_tool_access_at>>>();
  const tools = manifest.data ?? [];
  const chosenTool = tool || tools[0]?.name || '';
  return (
    <Section title="Who could call a tool, at a point in time">
      <form className="inline" data-form="point-in-time" onSubmit={async (e) => {
        e.preventDefault();
        setAnswer(undefined);
        await action.run('ask', async () => setAnswer(await rpc.agents_with_tool_access_at({ p_server_instance_id: serverId, p_tool_name: chosenTool, p_at: new Date(at).toISOString() })));
      }}>
        <label>Server <select aria-label="Server" value={serverId} onChange={(e) => { setServerId(e.target.value); setTool(''); }}>{servers.map((s) => <option key={s.id} value={s.id}>{s.display_name}</option>)}</select></label>
        <label>Tool <select aria-label="Tool" value={chosenTool} onChange={(e) => setTool(e.target.value)}>{tools.map((t) => <option key={t.name} value={t.name}>{t.name}</option>)}</select></label>
        <label>At (ISO time) <input aria-label="At" value={at} onChange={(e) => setAt(e.target.value)} size={26} /></label>
        <button type="submit" data-safe="">Ask</button>
      </form>
      <ErrorNote error={action.error} />
      {answer ? (
        answer.length === 0 ? <p data-answer="none">No agent could call <code>{chosenTool}</code> at {at}.</p> : (
          <table data-answer="agents">
            <thead><tr><th>Agent</th><th>Grant</th><th>Scope</th><th>Granted</th><th>Expires</th><th>Revoked</th></tr></thead>
            <tbody>
              {answer.map((r) => (
                <tr key={r.grant_id} data-agent={r.agent_name}>
                  <td>{r.agent_name}</td><td><code>{short(r.grant_id)}</code></td><td>{r.permission_scope}</td>
                  <td>{when(r.granted_at)} by <code>{short(r.granted_by)}</code></td><td>{when(r.expires_at)}</td><td>{when(r.revoked_at)}</td>
                </tr>
              ))}
            </tbody>
          </table>
        )
      ) : null}
    </Section>
  );
}

function UsageCharts({ agents, servers }: { agents: Pick<Agent, 'id' | 'name'>[]; servers: Pick<Instance, 'id' | 'display_name'>[] }) {
  const { org } = useConsole();
  const usage = useLoad(() => rows<Usage>(supabase.from('agent_mcp_connections').select('agent_id,server_instance_id,total_requests,failed_requests,total_duration_ms,last_used_at,status').eq('organization_id', org.id)), [org.id]);
  const sum = (key: 'agent_id' | 'server_instance_id', labels: Map<string, string>) => {
    const totals = new Map<string, { calls: number; failed: number; ms: number }>();
    for (const u of usage.data ?? []) {
      const t = totals.get(u[key]) ?? { calls: 0, failed: 0, ms: 0 };
      t.calls += Number(u.total_requests); t.failed += Number(u.failed_requests); t.ms += Number(u.total_duration_ms);
      totals.set(u[key], t);
    }
    return [...totals.entries()].filter(([, t]) => t.calls > 0).sort((a, b) => b[1].calls - a[1].calls).slice(0, 15)
      .map(([id, t]) => ({ id, label: labels.get(id) ?? short(id), ...t }));
  };
  const byAgent = sum('agent_id', new Map(agents.map((a) => [a.id, a.name])));
  const byServer = sum('server_instance_id', new Map(servers.map((s) => [s.id, s.display_name])));
  const calls = (list: typeof byAgent) => list.map((t) => ({
    label: t.label, note: `${t.calls} calls, ${t.failed} failed`,
    segments: [{ value: t.calls - t.failed, className: 'ok', title: `${t.calls - t.failed} succeeded` }, { value: t.failed, className: 'bad', title: `${t.failed} failed` }],
  }));
  return (
    <Section title="Usage">
      <ErrorNote error={usage.error} />
      {usage.data && byAgent.length === 0 ? <p className="muted">No calls recorded yet.</p> : null}
      {byAgent.length > 0 ? <BarChart title="Calls per agent" unit="calls" bars={calls(byAgent)} /> : null}
      {byServer.length > 0 ? <BarChart title="Calls per server" unit="calls" bars={calls(byServer)} /> : null}
      {byServer.length > 0 ? (
        <BarChart title="Average latency per server" unit="ms" bars={byServer.map((t) => ({ label: t.label, note: `${Math.round(t.ms / t.calls)} ms`, segments: [{ value: Math.round(t.ms / t.calls), className: 'latency', title: `${Math.round(t.ms / t.calls)} ms average` }] }))} />
      ) : null}
    </Section>
  );
}
