/**
 * An agent's resources and prompts through the gateway (agent-server.ts registers them on each
 * session's SDK server): listed and read only on servers whose grant reads (read_only,
 * full_access), decided again on every read or get; resources/subscribe and unsubscribe likewise
 * decided, relayed on the shared upstream session (one subscription per URI), and the server's
 * notifications/resources/updated sent to each subscriber; a session that ends leaves its
 * subscriptions.
 */
import type { Server } from '@modelcontextprotocol/sdk/server/index.js';
import type { RequestHandlerExtra } from '@modelcontextprotocol/sdk/shared/protocol.js';
import {
  ErrorCode,
  GetPromptRequestSchema,
  ListPromptsRequestSchema,
  ListResourceTemplatesRequestSchema,
  ListResourcesRequestSchema,
  ReadResourceRequestSchema,
  SubscribeRequestSchema,
  UnsubscribeRequestSchema,
  type Prompt,
  type ReadResourceResult,
  type Resource,
  type ResourceTemplate,
  type ServerNotification,
  type ServerRequest,
} from '@modelcontextprotocol/sdk/types.js';
import { qualify, unqualify } from './namespace.ts';
import { GatewayErrorCode, RelayedError, tagged } from './relayed.ts';
import type { GatewayServer } from './store.ts';
import type { LogSink, Upstream, UpstreamPool } from './upstream.ts';

type Extra = RequestHandlerExtra<ServerRequest, ServerNotification>;

/** What the read handlers use of an agent's session. */
export interface ReadContext {
  server: Server;
  pool: UpstreamPool;
  /** The agent's servers now, by namespace. */
  servers(): Promise<Map<string, GatewayServer>>;
  route(qualified: string, fresh: boolean): Promise<{ namespace: string; name: string; server: GatewayServer }>;
  upstreamOf(serverId: string): Promise<Upstream>;
  relay<T>(upstream: Upstream, sink: LogSink | undefined, run: () => Promise<T>): Promise<T>;
  logSink(extra: Extra): LogSink;
  onError?: (error: unknown) => void;
}

export function serveReads(context: ReadContext): void {
  const { server, pool, servers, route, upstreamOf, relay, logSink, onError } = context;

  /** Servers whose grant reads and which offer the capability, decided now. */
  async function readable(capability: 'resources' | 'prompts'): Promise<[string, GatewayServer, Upstream][]> {
    const found = await Promise.all(
      [...(await servers())]
        .filter(([, s]) => s.reads_allowed)
        .map(async ([namespace, s]): Promise<[string, GatewayServer, Upstream] | null> => {
          try {
            const upstream = await pool.get(s.server_instance_id);
            return upstream.capabilities[capability] ? [namespace, s, upstream] : null;
          } catch (error) {
            onError?.(error);
            return null;
          }
        }),
    );
    return found.filter((x): x is [string, GatewayServer, Upstream] => x !== null);
  }

  async function readTarget(qualified: string, capability: 'resources' | 'prompts'): Promise<{ name: string; upstream: Upstream }> {
    const { name, server: target } = await route(qualified, true);
    if (!target.reads_allowed) throw new RelayedError(GatewayErrorCode.denied, `${qualified} denied by the control plane: the ${target.permission_scope} scope does not read ${capability}`, { reason: 'scope_does_not_read' });
    const upstream = await upstreamOf(target.server_instance_id);
    if (!upstream.capabilities[capability]) throw new RelayedError(ErrorCode.MethodNotFound, `the server offers no ${capability}`);
    return { name, upstream };
  }

  /**
   * One listing over every readable server offering the capability: each server's items, renamed
   * into its namespace and tagged with its id; a server that fails is left out alone.
   */
  async function gathered<T extends { _meta?: Record<string, unknown> | undefined }>(
    capability: 'resources' | 'prompts',
    list: (upstream: Upstream) => Promise<T[]>,
    rename: (item: T, namespace: string) => T,
  ): Promise<T[]> {
    const all = await Promise.allSettled(
      (await readable(capability)).map(async ([namespace, s, upstream]) =>
        (await relay(upstream, undefined, () => list(upstream))).map((item) => tagged(rename(item, namespace), s.server_instance_id)),
      ),
    );
    return all.flatMap((r) => {
      if (r.status === 'fulfilled') return r.value;
      onError?.(r.reason);
      return [];
    });
  }

  server.setRequestHandler(ListResourcesRequestSchema, async (_request, extra) => ({
    resources: await gathered<Resource>(
      'resources',
      async (upstream) => (await upstream.client.listResources(undefined, { signal: extra.signal })).resources,
      (r, namespace) => ({ ...r, uri: qualify(namespace, r.uri) }),
    ),
  }));

  server.setRequestHandler(ListResourceTemplatesRequestSchema, async (_request, extra) => ({
    resourceTemplates: await gathered<ResourceTemplate>(
      'resources',
      async (upstream) => (await upstream.client.listResourceTemplates(undefined, { signal: extra.signal })).resourceTemplates,
      (t, namespace) => ({ ...t, uriTemplate: qualify(namespace, t.uriTemplate) }),
    ),
  }));

  server.setRequestHandler(ReadResourceRequestSchema, async (request, extra) => {
    const { name, upstream } = await readTarget(request.params.uri, 'resources');
    const namespace = unqualify(request.params.uri)?.namespace ?? '';
    const result = await relay<ReadResourceResult>(upstream, logSink(extra), () => upstream.client.readResource({ ...request.params, uri: name }, { signal: extra.signal }));
    return { ...result, contents: result.contents.map((c) => ({ ...c, uri: qualify(namespace, c.uri) })) };
  });

  /** This session's subscriptions: the namespaced URI, its upstream and the listener there. */
  const subscriptions = new Map<string, { upstream: Upstream; name: string; listener: () => void }>();

  server.setRequestHandler(SubscribeRequestSchema, async (request) => {
    const { uri } = request.params;
    if (subscriptions.has(uri)) return {};
    const { name, upstream } = await readTarget(uri, 'resources');
    if (!upstream.capabilities.resources?.subscribe) throw new RelayedError(ErrorCode.MethodNotFound, 'the server offers no resource subscriptions');
    const listener = (): void => void server.sendResourceUpdated({ uri }).catch(() => undefined);
    subscriptions.set(uri, { upstream, name, listener });
    try {
      await relay(upstream, undefined, () => upstream.subscribe(name, listener));
    } catch (error) {
      subscriptions.delete(uri);
      throw error;
    }
    return {};
  });

  async function unsubscribe(uri: string): Promise<void> {
    const subscription = subscriptions.get(uri);
    if (!subscription) return;
    subscriptions.delete(uri);
    await relay(subscription.upstream, undefined, () => subscription.upstream.unsubscribe(subscription.name, subscription.listener));
  }

  server.setRequestHandler(UnsubscribeRequestSchema, async (request) => {
    await unsubscribe(request.params.uri);
    return {};
  });

  // A session that ends leaves its subscriptions.
  server.onclose = () => {
    for (const uri of [...subscriptions.keys()]) void unsubscribe(uri).catch((error: unknown) => onError?.(error));
  };

  server.setRequestHandler(ListPromptsRequestSchema, async (_request, extra) => ({
    prompts: await gathered<Prompt>(
      'prompts',
      async (upstream) => (await upstream.client.listPrompts(undefined, { signal: extra.signal })).prompts,
      (p, namespace) => ({ ...p, name: qualify(namespace, p.name) }),
    ),
  }));

  server.setRequestHandler(GetPromptRequestSchema, async (request, extra) => {
    const { name, upstream } = await readTarget(request.params.name, 'prompts');
    return relay(upstream, logSink(extra), () => upstream.client.getPrompt({ ...request.params, name }, { signal: extra.signal }));
  });
}
