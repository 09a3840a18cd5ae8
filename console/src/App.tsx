/**
 * The shell: the session (Supabase Auth), the organization picker, the caller's role, and the
 * screens. Routes are paths (/organization, /servers, /agents, /audit): the URL fragment is
 * where Supabase Auth's redirect carries a session.
 */
import { useEffect, useState } from 'react';
import type { Session } from '@supabase/supabase-js';
import type { OrgRole } from '../../client/src/schemas.ts';
import { Ctx, atLeast, type ConsoleContext } from './context.ts';
import { rows, supabase } from './supabase.ts';
import type { Member, Organization } from './types.ts';
import { ErrorNote, Safe, useLoad } from './ui.tsx';
import { SignIn } from './screens/SignIn.tsx';
import { OrganizationScreen } from './screens/Organization.tsx';
import { ServersScreen } from './screens/Servers.tsx';
import { AgentsScreen } from './screens/Agents.tsx';
import { AuditScreen } from './screens/Audit.tsx';
import { ConnectionsScreen } from './screens/Connections.tsx';

const SCREENS = [
  { path: '/organization', label: 'Organization', Screen: OrganizationScreen },
  { path: '/servers', label: 'MCP servers', Screen: ServersScreen },
  { path: '/agents', label: 'Agents and access', Screen: AgentsScreen },
  { path: '/audit', label: 'Audit and usage', Screen: AuditScreen },
  { path: '/connections', label: 'Connections', Screen: ConnectionsScreen },
] as const;

function usePath(): [string, (path: string) => void] {
  const [path, setPath] = useState(window.location.pathname);
  useEffect(() => {
    const onPop = () => setPath(window.location.pathname);
    window.addEventListener('popstate', onPop);
    return () => window.removeEventListener('popstate', onPop);
  }, []);
  return [path, (next) => { window.history.pushState(null, '', next + window.location.search); setPath(next); }];
}

export function App() {
  const [session, setSession] = useState<Session | null>();
  useEffect(() => {
    supabase.auth.getSession().then(({ data }) => setSession(data.session));
    const { data } = supabase.auth.onAuthStateChange((_event, next) => setSession(next));
    return () => data.subscription.unsubscribe();
  }, []);
  if (session === undefined) return <p className="loading">Signing in…</p>;
  if (session === null) return <SignIn />;
  return <Signed session={session} />;
}

function Signed({ session }: { session: Session }) {
  const userId = session.user.id;
  const [path, go] = usePath();
  const [orgId, setOrgId] = useState<string>(() => new URLSearchParams(window.location.search).get('org') ?? '');
  const orgs = useLoad(async () => {
    const [organizations, memberships] = await Promise.all([
      rows<Organization>(supabase.from('organizations').select('id,name,slug').order('name')),
      rows<Pick<Member, 'organization_id' | 'role'>>(supabase.from('organization_members').select('organization_id,role').eq('user_id', userId)),
    ]);
    const roles = new Map(memberships.map((m) => [m.organization_id, m.role] as [string, OrgRole]));
    return organizations.filter((o) => roles.has(o.id)).map((o) => ({ ...o, role: roles.get(o.id) as OrgRole }));
  }, [userId]);
  // The last list seen in this tab, so that a reload starts the screen's reads at once instead
  // of after this one; the fresh answer replaces it a round trip later (the database decides
  // either way: a stale role only shows or hides a button).
  const cacheKey = `console.organizations.${userId}`;
  const [cached] = useState(() => {
    try {
      return JSON.parse(sessionStorage.getItem(cacheKey) ?? 'null') as typeof orgs.data | null;
    } catch {
      return null;
    }
  });
  useEffect(() => {
    if (orgs.data) sessionStorage.setItem(cacheKey, JSON.stringify(orgs.data));
  }, [orgs.data, cacheKey]);
  const list = orgs.data ?? cached ?? [];
  const current = list.find((o) => o.id === orgId) ?? list[0];
  const screen = SCREENS.find((s) => s.path === path) ?? SCREENS[1];
  const context: ConsoleContext | null = current
    ? { userId, email: session.user.email ?? '', org: current, role: current.role, isAdmin: atLeast(current.role, 'admin'), isMember: atLeast(current.role, 'member') }
    : null;
  return (
    <div className="app">
      <header className="top">
        <h1>MCP control plane</h1>
        {list.length > 0 ? (
          <select aria-label="Organization" value={current?.id} onChange={(e) => setOrgId(e.target.value)}>
            {list.map((o) => <option key={o.id} value={o.id}>{o.name}</option>)}
          </select>
        ) : null}
        {context ? <span className="role" data-role={context.role}>{context.role}</span> : null}
        <span className="who">{session.user.email}</span>
        <Safe onClick={() => supabase.auth.signOut()}>Sign out</Safe>
      </header>
      <nav>
        {SCREENS.map((s) => (
          <Safe key={s.path} className={s === screen ? 'active' : ''} onClick={() => go(s.path)}>{s.label}</Safe>
        ))}
      </nav>
      <main>
        <ErrorNote error={orgs.error} />
        {orgs.data && !context ? <p>You are not a member of any organization yet.</p> : null}
        {context ? (
          <Ctx.Provider value={context}>
            <screen.Screen key={`${context.org.id}${screen.path}`} />
          </Ctx.Provider>
        ) : null}
      </main>
    </div>
  );
}
