/**
 * The live MCP connections behind a context, kept beside it (not in it), so that a context stays
 * plain data: it can be logged or serialised, and its connections are still reused by callTool.
 */
import type { Session } from './session.ts';
import type { McpContext } from './types.ts';

const sessions = new WeakMap<McpContext, Map<string, Session>>();

export function sessionsOf(context: McpContext): Map<string, Session> {
  let map = sessions.get(context);
  if (!map) {
    map = new Map();
    sessions.set(context, map);
  }
  return map;
}

/** Closes every MCP connection a context holds (callTool reconnects if the context is used again). */
export async function closeMCPContext(context: McpContext): Promise<void> {
  const map = sessions.get(context);
  if (!map) return;
  sessions.delete(context);
  await Promise.all([...map.values()].map((session) => session.close()));
}
