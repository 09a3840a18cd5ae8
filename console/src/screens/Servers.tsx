/**
 * MCP server instances with their lifecycle state, live (polled every second while one is
 * moving); the actions the state machine allows from each state (read from
 * mcp_server_transitions, not restated here), each showing progress until the state settles;
 * the catalog with each server's tools and annotations; the create form generated from the
 * catalog entry's configuration schema, secrets write-only.
 */
import { useEffect, useState } from 'react';
import type { McpServerStatus } from '../../../client/src/schemas.ts';
import { Fields, mergeConfig, secretsSet, visibleConfig, type ConfigValue } from '../ConfigForm.tsx';
import { useConsole } from '../context.ts';
import { rows, rpc, supabase } from '../supabase.ts';
import type { CatalogEntry, Instance, Tool, Toolbox } from '../types.ts';
import { ErrorNote, Mutating, Safe, Section, useAction, useLoad, when } from '../ui.tsx';

const MOVING: McpServerStatus[] = ['deploying', 'stopping', 'removing'];
const ACTIONS = [
  { event: 'deploy', action: 'deploy', label: 'Deploy', progress: 'Deploying…' },
  { event: 'restart', action: 'restart', label: 'Restart', progress: 'Restarting…' },
  { event: 'stop', action: 'stop', label: 'Stop', progress: 'Stopping…' },
  { event: 'remove', action: 'delete', label: 'Remove', progress: 'Removing…' },
] as const;

/** The state of an instance in words, with its last error where it has one. */
export function stateInWords(i: Pick<Instance, 'status' | 'last_error_summary' | 'health_status'>): string {
  const error = i.last_error_summary ? `: ${i.last_error_summary}` : '';
  switch (i.status) {
    case 'pending': return 'created, not deployed yet';
    case 'deploying': return 'the toolbox is starting it';
    case 'running': return i.health_status === 'healthy' ? 'running and healthy' : 'running';
    case 'unhealthy': return `running, but failing its health checks${error}`;
    case 'stopping': return 'the toolbox is stopping it';
    case 'stopped': return `stopped${error}`;
    case 'failed': return `failed${error || ': no reason was reported'}`;
    case 'removing': return 'the toolbox is removing it';
    case 'removed': return 'removed';
  }
}

// Rows rendered at first; a large organization pages through the rest or filters.
const PAGE = 50;
const INSTANCE_COLUMNS = 'id,display_name,instance_name_on_toolbox,account_tool_environment_id,catalog_id,status,status_changed_at,health_status,last_error_summary,secret_fields,endpoint_url,mcp_server_type,priority,pinned_tool_names,pinned_read_only_tool_names';

export function ServersScreen() {
  const { org, isAdmin } = useConsole();
  const [pending, setPending] = useState<Record<string, string>>({});
  const instances = useLoad(
    () => rows<Instance>(supabase.from('account_tool_instances').select(INSTANCE_COLUMNS).eq('organization_id', org.id).neq('status', 'removed').order('display_name')),
    [org.id],
    (list) => (list?.some((i) => MOVING.includes(i.status)) || Object.keys(pending).length > 0 ? 1000 : 5000),
  );
  const reference = useLoad(async () => {
    const [catalog, toolboxes, transitions] = await Promise.all([
      rows<CatalogEntry>(supabase.from('mcp_server_catalog').select('id,name,display_name,description,version,docker_image_url,tool_manifest,config_schema,required_oauth_providers').order('display_name')),
      rows<Toolbox>(supabase.from('account_tool_environments').select('id,name,dtma_base_url,status,last_heartbeat_at,last_error_summary').eq('organization_id', org.id).order('name')),
      rows<{ from_status: McpServerStatus; event: string }>(supabase.from('mcp_server_transitions').select('from_status,event')),
    ]);
    return { catalog, toolboxes, allowed: new Set(transitions.map((t) => `${t.from_status}:${t.event}`)) };
  }, [org.id]);
  const action = useAction();
  const [editing, setEditing] = useState<string>();
  const [filter, setFilter] = useState('');
  const [shown, setShown] = useState(PAGE);
  const all = instances.data ?? [];
  const matching = filter ? all.filter((i) => `${i.display_name} ${i.instance_name_on_toolbox} ${i.status}`.toLowerCase().includes(filter.toLowerCase())) : all;
  const list = matching.slice(0, shown);
  const catalogById = new Map((reference.data?.catalog ?? []).map((c) => [c.id, c]));
  const toolboxById = new Map((reference.data?.toolboxes ?? []).map((t) => [t.id, t]));
  // A pending action lasts until the instance has changed state since the click and settled.
  useEffect(() => {
    const done = all.filter((i) => pending[i.id] && !MOVING.includes(i.status) && i.status_changed_at !== pending[i.id].split('|')[1]);
    if (done.length > 0) setPending((p) => Object.fromEntries(Object.entries(p).filter(([id]) => !done.some((i) => i.id === id))));
  }, [instances.data]);

  const act = async (i: Instance, a: (typeof ACTIONS)[number]) => {
    setPending((p) => ({ ...p, [i.id]: `${a.action}|${i.status_changed_at}` }));
    const ok = await action.run(`${a.action} ${i.id}`, () => rpc.manage_mcp_servers({ action: a.action, organization_id: org.id, server_id: i.id }));
    if (!ok) setPending(({ [i.id]: _, ...rest }) => rest);
    instances.reload();
  };

  return (
    <div data-screen="servers" data-ready={instances.data && reference.data ? '' : undefined}>
      <Section title="MCP servers" actions={<Safe onClick={instances.reload}>Refresh</Safe>}>
        <ErrorNote error={instances.error ?? action.error} />
        {all.length > PAGE ? (
          <label className="filter">Find <input value={filter} onChange={(e) => setFilter(e.target.value)} placeholder="name or state" /> <small>{matching.length} of {all.length}</small></label>
        ) : null}
        <table className="instances">
          <thead><tr><th>Server</th><th>Catalog</th><th>Toolbox</th><th>State</th><th>Tools</th><th>Since</th><th></th></tr></thead>
          <tbody>
            {list.map((i) => {
              const inFlight = pending[i.id];
              const flight = inFlight ? ACTIONS.find((a) => a.action === inFlight.split('|')[0]) : undefined;
              return (
                <tr key={i.id} data-instance={i.instance_name_on_toolbox} data-status={i.status}>
                  <td><strong>{i.display_name}</strong><br /><code>{i.instance_name_on_toolbox}</code></td>
                  <td>{catalogById.get(i.catalog_id)?.display_name ?? i.mcp_server_type}</td>
                  <td>{toolboxById.get(i.account_tool_environment_id)?.name ?? '—'}</td>
                  <td><span className={`badge status-${i.status}`}>{i.status}</span> <span className="words">{stateInWords(i)}</span></td>
                  <td>{i.pinned_tool_names.length} ({i.pinned_read_only_tool_names.length} read-only)</td>
                  <td>{when(i.status_changed_at)}</td>
                  <td className="actions">
                    {flight ? <span className="progress" data-progress="">{flight.progress}</span> : null}
                    {isAdmin && !flight
                      ? ACTIONS.filter((a) => reference.data?.allowed.has(`${i.status}:${a.event}`)).map((a) => (
                          <Mutating key={a.event} data-action={a.action} onClick={() => act(i, a)}>{a.label}</Mutating>
                        ))
                      : null}
                    {isAdmin && !flight ? <Mutating data-action="configure" onClick={() => setEditing(editing === i.id ? undefined : i.id)}>Configure</Mutating> : null}
                  </td>
                </tr>
              );
            })}
          </tbody>
        </table>
        {list.length === 0 && instances.data ? <p>{filter ? 'No MCP server matches.' : 'No MCP servers yet.'}</p> : null}
        {matching.length > list.length ? <Safe onClick={() => setShown(shown + PAGE)}>Show {Math.min(PAGE, matching.length - list.length)} more of {matching.length - list.length}</Safe> : null}
        {editing && reference.data ? (
          <EditConfiguration key={editing} instanceId={editing} catalog={catalogById} onDone={() => { setEditing(undefined); instances.reload(); }} />
        ) : null}
      </Section>
      {isAdmin && reference.data ? <CreateServer catalog={reference.data.catalog} toolboxes={reference.data.toolboxes} onCreated={instances.reload} /> : null}
      <Section title="Catalog">
        <ErrorNote error={reference.error} />
        {(reference.data?.catalog ?? []).map((c) => <CatalogCard key={c.id} entry={c} />)}
      </Section>
    </div>
  );
}

export function Annotations({ tool }: { tool: Tool }) {
  const a = tool.annotations ?? {};
  return (
    <span className="annotations">
      {a.readOnlyHint === true ? <span className="badge ro" data-read-only="">read-only</span> : null}
      {a.destructiveHint === true ? <span className="badge destructive">destructive</span> : null}
      {a.idempotentHint === true ? <span className="badge">idempotent</span> : null}
      {a.openWorldHint === true ? <span className="badge">open world</span> : null}
    </span>
  );
}

function CatalogCard({ entry }: { entry: CatalogEntry }) {
  const [open, setOpen] = useState(false);
  const readOnly = entry.tool_manifest.filter((t) => t.annotations?.readOnlyHint === true).length;
  return (
    <div className="card" data-catalog={entry.name}>
      <div className="card-head">
        <strong>{entry.display_name}</strong> <code>{entry.name}</code> <small>{entry.version}</small>
        <span> · {entry.tool_manifest.length} tools, {readOnly} read-only</span>
        {entry.required_oauth_providers.length > 0 ? <span className="badge">needs {entry.required_oauth_providers.join(', ')}</span> : null}
        <Safe onClick={() => setOpen(!open)}>{open ? 'Hide tools' : 'Show tools'}</Safe>
      </div>
      <p>{entry.description}</p>
      {open ? (
        <ul className="tools">
          {entry.tool_manifest.map((t) => <li key={t.name}><code>{t.name}</code> <Annotations tool={t} /> <small>{t.description}</small></li>)}
        </ul>
      ) : null}
    </div>
  );
}

function CreateServer({ catalog, toolboxes, onCreated }: { catalog: CatalogEntry[]; toolboxes: Toolbox[]; onCreated: () => void }) {
  const { org } = useConsole();
  const [open, setOpen] = useState(false);
  const [catalogName, setCatalogName] = useState(catalog[0]?.name ?? '');
  const [toolboxId, setToolboxId] = useState(toolboxes[0]?.id ?? '');
  const [name, setName] = useState('');
  const [displayName, setDisplayName] = useState('');
  const [config, setConfig] = useState<ConfigValue>({});
  const action = useAction();
  const entry = catalog.find((c) => c.name === catalogName);
  return (
    <Section title="Create an MCP server" actions={<Safe data-action="open-create" onClick={() => setOpen(!open)}>{open ? 'Close' : 'New MCP server'}</Safe>}>
      {open ? <form className="create" data-form="create-server" onSubmit={async (e) => {
        e.preventDefault();
        if (!entry) return;
        const ok = await action.run('create', () => rpc.manage_mcp_servers({
          action: 'create', organization_id: org.id,
          server_config: { toolbox_id: toolboxId, catalog_name: entry.name, instance_name: name, ...(displayName ? { display_name: displayName } : {}), configuration: mergeConfig(entry.config_schema, config, {}) },
        }));
        if (ok) { setName(''); setDisplayName(''); setConfig({}); onCreated(); }
      }}>
        <label>Catalog server
          <select value={catalogName} onChange={(e) => { setCatalogName(e.target.value); setConfig({}); }}>
            {catalog.map((c) => <option key={c.name} value={c.name}>{c.display_name}</option>)}
          </select>
        </label>
        <label>Toolbox
          <select value={toolboxId} onChange={(e) => setToolboxId(e.target.value)}>
            {toolboxes.map((t) => <option key={t.id} value={t.id}>{t.name}</option>)}
          </select>
        </label>
        <label>Name on the toolbox <input value={name} onChange={(e) => setName(e.target.value)} placeholder="my-server" required /></label>
        <label>Display name <input value={displayName} onChange={(e) => setDisplayName(e.target.value)} placeholder={entry?.display_name} /></label>
        {entry ? <Fields schema={entry.config_schema} value={config} onChange={setConfig} secrets={{}} /> : null}
        <ErrorNote error={action.error} />
        <button type="submit" data-mutates="" disabled={!!action.busy}>{action.busy ? 'Creating…' : 'Create'}</button>
      </form> : null}
    </Section>
  );
}

function EditConfiguration({ instanceId, catalog, onDone }: { instanceId: string; catalog: Map<string, CatalogEntry>; onDone: () => void }) {
  const { org } = useConsole();
  const stored = useLoad(() => rows<Pick<Instance, 'id' | 'catalog_id' | 'configuration' | 'display_name' | 'secret_fields'>>(supabase.from('account_tool_instances').select('id,catalog_id,configuration,display_name,secret_fields').eq('id', instanceId)), [instanceId]);
  const row = stored.data?.[0];
  const entry = row ? catalog.get(row.catalog_id) : undefined;
  const [edited, setEdited] = useState<ConfigValue>();
  const action = useAction();
  if (!row || !entry) return <ErrorNote error={stored.error} />;
  const value = edited ?? visibleConfig(entry.config_schema, row.configuration);
  return (
    <form className="create" data-form="configure" onSubmit={async (e) => {
      e.preventDefault();
      const ok = await action.run('update', () => rpc.manage_mcp_servers({ action: 'update', organization_id: org.id, server_id: row.id, server_config: { configuration: mergeConfig(entry.config_schema, value, row.configuration) } }));
      if (ok) onDone();
    }}>
      <h3>Configuration of {row.display_name}</h3>
      <Fields schema={entry.config_schema} value={value} onChange={setEdited} secrets={secretsSet(row.secret_fields)} />
      <ErrorNote error={action.error} />
      <button type="submit" data-mutates="">Save configuration</button>
    </form>
  );
}
