/**
 * Members and their roles (invite, change a role, remove; the last owner stays, as the
 * database's trigger insists, and the page says so before anyone tries), and the
 * organization's toolboxes with their health.
 */
import { useState } from 'react';
import type { OrgRole } from '../../../client/src/schemas.ts';
import { ROLES, useConsole } from '../context.ts';
import { rows, rpc, supabase } from '../supabase.ts';
import type { Instance, Member, Toolbox } from '../types.ts';
import { ErrorNote, Mutating, Section, short, useAction, useLoad, when } from '../ui.tsx';

/** A toolbox's health in words, from its status and its last heartbeat. */
export function toolboxHealth(t: Toolbox, now = Date.now()): { label: string; tone: 'ok' | 'warn' | 'bad' } {
  if (t.status === 'disabled') return { label: 'disabled', tone: 'bad' };
  if (t.status === 'unresponsive') return { label: `unresponsive${t.last_error_summary ? `: ${t.last_error_summary}` : ''}`, tone: 'bad' };
  if (!t.last_heartbeat_at) return { label: 'active, no heartbeat yet', tone: 'warn' };
  const minutes = Math.round((now - new Date(t.last_heartbeat_at).getTime()) / 60000);
  return minutes > 5 ? { label: `active, last heartbeat ${minutes} min ago`, tone: 'warn' } : { label: 'healthy', tone: 'ok' };
}

export function OrganizationScreen() {
  const { org, userId, role, isAdmin } = useConsole();
  const members = useLoad(() => rows<Member>(supabase.from('organization_members').select('organization_id,user_id,role,added_by,created_at').eq('organization_id', org.id).order('created_at')), [org.id]);
  const toolboxes = useLoad(async () => {
    const [boxes, instances] = await Promise.all([
      rows<Toolbox>(supabase.from('account_tool_environments').select('id,name,dtma_base_url,status,last_heartbeat_at,last_error_summary').eq('organization_id', org.id).order('name')),
      rows<Pick<Instance, 'account_tool_environment_id' | 'status'>>(supabase.from('account_tool_instances').select('account_tool_environment_id,status').eq('organization_id', org.id).neq('status', 'removed')),
    ]);
    return boxes.map((b) => ({ ...b, instances: instances.filter((i) => i.account_tool_environment_id === b.id) }));
  }, [org.id]);
  const action = useAction();
  const [invite, setInvite] = useState({ user: '', role: 'member' as OrgRole });
  const owners = (members.data ?? []).filter((m) => m.role === 'owner').length;
  // Only owners make, unmake or remove owners; admins manage the rest.
  const assignable = ROLES.filter((r) => r !== 'owner' || role === 'owner');
  const done = async (label: string, fn: () => Promise<unknown>) => { if (await action.run(label, fn)) members.reload(); };

  return (
    <div data-screen="organization" data-ready={members.data && toolboxes.data ? '' : undefined}>
      <Section title={`Members of ${org.name}`}>
        <ErrorNote error={members.error ?? action.error} />
        <table>
          <thead><tr><th>User</th><th>Role</th><th>Member since</th><th></th></tr></thead>
          <tbody>
            {(members.data ?? []).map((m) => {
              const lastOwner = m.role === 'owner' && owners === 1;
              const mayTouch = isAdmin && (m.role !== 'owner' || role === 'owner');
              return (
                <tr key={m.user_id} data-member={m.user_id}>
                  <td><code title={m.user_id}>{short(m.user_id)}</code>{m.user_id === userId ? ' (you)' : ''}</td>
                  <td>
                    {mayTouch && !lastOwner ? (
                      <select aria-label="Role" data-mutates="" value={m.role}
                        onChange={(e) => done('role', () => rpc.change_organization_member_role({ p_organization_id: org.id, p_user_id: m.user_id, p_role: e.target.value as OrgRole }))}>
                        {assignable.map((r) => <option key={r} value={r}>{r}</option>)}
                      </select>
                    ) : <span className={`badge role-${m.role}`}>{m.role}</span>}
                    {lastOwner ? <span className="note" data-last-owner=""> last owner: make another member owner before demoting or removing</span> : null}
                  </td>
                  <td>{when(m.created_at)}</td>
                  <td>
                    {(mayTouch || (m.user_id === userId && role !== 'viewer')) && !lastOwner ? (
                      <Mutating busy={action.busy === `remove ${m.user_id}`}
                        onClick={() => done(`remove ${m.user_id}`, () => rpc.remove_organization_member({ p_organization_id: org.id, p_user_id: m.user_id }))}>
                        {m.user_id === userId ? 'Leave' : 'Remove'}
                      </Mutating>
                    ) : null}
                  </td>
                </tr>
              );
            })}
          </tbody>
        </table>
        {isAdmin ? (
          <form className="inline" onSubmit={(e) => { e.preventDefault(); void done('invite', () => rpc.add_organization_member({ p_organization_id: org.id, p_user_id: invite.user.trim(), p_role: invite.role })); }}>
            <label>Add a user (their user id) <input value={invite.user} onChange={(e) => setInvite({ ...invite, user: e.target.value })} placeholder="00000000-0000-…" size={38} /></label>
            <select aria-label="Role of the new member" value={invite.role} onChange={(e) => setInvite({ ...invite, role: e.target.value as OrgRole })}>
              {assignable.map((r) => <option key={r} value={r}>{r}</option>)}
            </select>
            <button type="submit" data-mutates="">Add member</button>
          </form>
        ) : null}
      </Section>
      <Section title="Toolboxes">
        <ErrorNote error={toolboxes.error} />
        <table>
          <thead><tr><th>Name</th><th>DTMA</th><th>Health</th><th>Last heartbeat</th><th>MCP servers</th></tr></thead>
          <tbody>
            {(toolboxes.data ?? []).map((t) => {
              const health = toolboxHealth(t);
              const running = t.instances.filter((i) => i.status === 'running').length;
              return (
                <tr key={t.id}>
                  <td>{t.name}</td><td><code>{t.dtma_base_url}</code></td>
                  <td><span className={`dot ${health.tone}`} /> {health.label}</td>
                  <td>{when(t.last_heartbeat_at)}</td>
                  <td>{running} running of {t.instances.length}</td>
                </tr>
              );
            })}
          </tbody>
        </table>
      </Section>
    </div>
  );
}
