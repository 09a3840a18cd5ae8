/**
 * What the gateway asks the database, all as the platform (service_role): who is calling, which
 * servers the agent reaches now, how to reach a server, whether a tool call is allowed with the
 * definition the gateway read upstream (and why not), and the interaction log. One function per
 * question, over any RpcTransport (supabase-js with the service key, or the direct transport
 * with service claims: gatewayStore), or straight over a pool whose connections are the
 * service_role (sqlGatewayStore: one statement per question instead of PostgREST's five, the
 * gateway's hot path). The SQL signatures are spelled here only.
 */
import type { Tool } from '@modelcontextprotocol/sdk/types.js';
import { z } from 'zod';
import { UnexpectedResultError, SdkErrorCode } from '../errors.ts';
import { toControlPlaneError, type PgPoolLike } from '../direct-transport.ts';
import { createRpc } from '../rpc.ts';
import {
  GatewayCallDecisionSchema,
  GatewayPrincipalSchema,
  GatewayServerSchema,
  GatewayToolDecisionSchema,
  GatewayUpstreamSchema,
  type GatewayCallDecision,
  type GatewayPrincipal,
  type GatewayServer,
  type GatewayToolDecision,
  type GatewayUpstream,
  type PresentedTool,
} from '../schemas.ts';
export { GatewayCallDecisionSchema, GatewayPrincipalSchema, GatewayServerSchema, GatewayUpstreamSchema, type GatewayCallDecision, type GatewayPrincipal, type GatewayServer, type GatewayToolDecision, type GatewayUpstream };
import type { RpcTransport } from '../transport.ts';
import { BatchesNotWritten, type AgentInteractions } from './interaction-log.ts';
import { clipInteractions, logInteractions } from '../chat/log.ts';

/** One server's tools as the gateway read them upstream. */
export interface PresentedServerTools {
  serverId: string;
  tools: Tool[];
}

/** gateway_filter_tools' p_servers. */
function presentedServers(servers: PresentedServerTools[]): { server_instance_id: string; tools: PresentedTool[] }[] {
  return servers.map((s) => ({ server_instance_id: s.serverId, tools: s.tools as PresentedTool[] }));
}

/** The credential a request presents: an agent API key, or a user (verified from a JWT) naming an agent. */
export type GatewayCredential = { apiKey: string; agentId?: string } | { userId: string; agentId: string };

/** A function's result checked against its schema; UnexpectedResultError when it does not match. */
export function parse<S extends z.ZodType>(schema: S, value: unknown, what: string): z.output<S> {
  const parsed = schema.safeParse(value);
  if (!parsed.success) {
    throw new UnexpectedResultError({ code: SdkErrorCode.unexpectedResult, message: `${what}: unexpected result`, details: parsed.error.message });
  }
  return parsed.data;
}

export interface GatewayStore {
  authenticate(credential: GatewayCredential): Promise<GatewayPrincipal>;
  agentServers(agentId: string): Promise<GatewayServer[]>;
  upstream(serverId: string): Promise<GatewayUpstream>;
  /** gateway_authorize_call (validate_agent_mcp_access with the presented definition): the decision of one call, and how long it holds. */
  authorizeCall(agentId: string, serverId: string, tool: Tool): Promise<GatewayCallDecision>;
  /**
   * gateway_filter_tools (the rule of filter_agent_mcp_tools) over what the gateway read upstream
   * from each server, all servers in one call: each tool allowed or not, and why (drift recorded).
   */
  filterTools(agentId: string, servers: PresentedServerTools[]): Promise<GatewayToolDecision[]>;
  /** Appends each agent's interactions to the log (audit_mcp_interactions): all in one statement over a pool. */
  log(batches: AgentInteractions[]): Promise<void>;
}

// Each result's schema built once (zod compiles a schema on first use: building one per call costs).
const PrincipalRows = z.array(GatewayPrincipalSchema).length(1);
const ServerRows = z.array(GatewayServerSchema);
const UpstreamRows = z.array(GatewayUpstreamSchema).length(1);
const DecisionRows = z.array(GatewayCallDecisionSchema).length(1);
const FilterRows = z.array(GatewayToolDecisionSchema);

/** The store over a transport that acts as the platform (service_role). */
export function gatewayStore(transport: RpcTransport): GatewayStore {
  const rpc = createRpc(transport);
  return {
    async authenticate(credential) {
      const args =
        'apiKey' in credential
          ? { p_api_key: credential.apiKey, ...(credential.agentId ? { p_agent_id: credential.agentId } : {}) }
          : { p_user_id: credential.userId, p_agent_id: credential.agentId };
      const rows = parse(PrincipalRows, await transport.rpc('gateway_authenticate', args), 'gateway_authenticate');
      return rows[0] as GatewayPrincipal;
    },
    async agentServers(agentId) {
      return parse(ServerRows, await transport.rpc('gateway_agent_servers', { p_agent_id: agentId }), 'gateway_agent_servers');
    },
    async upstream(serverId) {
      const rows = parse(UpstreamRows, await transport.rpc('gateway_upstream', { p_server_instance_id: serverId }), 'gateway_upstream');
      return rows[0] as GatewayUpstream;
    },
    async authorizeCall(agentId, serverId, tool) {
      const rows = await rpc.gateway_authorize_call({ p_agent_id: agentId, p_server_instance_id: serverId, p_tool_definition: tool as PresentedTool });
      return rows[0] as GatewayCallDecision;
    },
    filterTools: async (agentId, servers) =>
      servers.length === 0 ? [] : rpc.gateway_filter_tools({ p_agent_id: agentId, p_servers: presentedServers(servers) }),
    // One RPC per batch, so not all or nothing: a failure names only the batches not written.
    log: async (batches) => {
      const settled = await Promise.allSettled(batches.map((b) => logInteractions(transport, b.agentId, b.interactions)));
      const errors = settled.flatMap((each) => (each.status === 'rejected' ? [each.reason as unknown] : []));
      if (errors.length > 0) throw new BatchesNotWritten(errors);
    },
  };
}

const ROWS = (call: string): string => `select coalesce(pg_catalog.json_agg(r), '[]'::json) as result from ${call} as r`;

/** Connection options that make every session of a pool the service_role, claims included. */
export const SERVICE_ROLE_OPTIONS = '-c role=service_role -c request.jwt.claims={"role":"service_role"}';

/**
 * The store over a pool whose connections act as service_role (a pg.Pool with
 * `options: SERVICE_ROLE_OPTIONS`): each question is one autocommitted statement.
 */
export function sqlGatewayStore(pool: PgPoolLike): GatewayStore {
  async function query(sql: string, values: unknown[]): Promise<unknown> {
    let client;
    try {
      client = await pool.connect();
    } catch (error) {
      throw toControlPlaneError(error);
    }
    try {
      const { rows } = await client.query(sql, values);
      client.release();
      return rows[0]?.result;
    } catch (error) {
      client.release();
      throw toControlPlaneError(error);
    }
  }
  return {
    async authenticate(credential) {
      const rows = await query(ROWS('public.gateway_authenticate(p_api_key => $1::text, p_user_id => $2::uuid, p_agent_id => $3::uuid)'), [
        'apiKey' in credential ? credential.apiKey : null,
        'userId' in credential ? credential.userId : null,
        credential.agentId ?? null,
      ]);
      return parse(PrincipalRows, rows, 'gateway_authenticate')[0] as GatewayPrincipal;
    },
    async agentServers(agentId) {
      return parse(ServerRows, await query(ROWS('public.gateway_agent_servers($1::uuid)'), [agentId]), 'gateway_agent_servers');
    },
    async upstream(serverId) {
      const rows = await query(ROWS('public.gateway_upstream($1::uuid)'), [serverId]);
      return parse(UpstreamRows, rows, 'gateway_upstream')[0] as GatewayUpstream;
    },
    async authorizeCall(agentId, serverId, tool) {
      const rows = await query(ROWS('public.gateway_authorize_call($1::uuid, $2::uuid, $3::jsonb)'), [agentId, serverId, JSON.stringify(tool)]);
      return parse(DecisionRows, rows, 'gateway_authorize_call')[0] as GatewayCallDecision;
    },
    async filterTools(agentId, servers) {
      if (servers.length === 0) return [];
      const rows = await query(ROWS('public.gateway_filter_tools($1::uuid, $2::jsonb)'), [agentId, JSON.stringify(presentedServers(servers))]);
      return parse(FilterRows, rows, 'gateway_filter_tools');
    },
    async log(batches) {
      const rows = batches.filter((b) => b.interactions.length > 0).map((b) => ({ agent_id: b.agentId, interactions: clipInteractions(b.interactions) }));
      if (rows.length === 0) return;
      await query(
        `select pg_catalog.sum(public.audit_mcp_interactions(x.agent_id, x.interactions)) as result
           from pg_catalog.jsonb_to_recordset($1::jsonb) as x(agent_id uuid, interactions jsonb)`,
        [JSON.stringify(rows)],
      );
    },
  };
}
