/**
 * Typed calls of every public function (schemas.ts): the arguments are checked with zod before
 * anything is sent (InvalidArgumentError, 22023, naming each bad field), the result is parsed
 * on the way back (UnexpectedResultError when the database answers another shape).
 *
 *   const rpc = createRpc(transport);
 *   const servers = await rpc.get_agent_mcp_servers({ p_agent_id });
 */
import type { z } from 'zod';
import { InvalidArgumentError, SdkErrorCode, UnexpectedResultError } from './errors.ts';
import { rpcSchemas, type RpcArgs, type RpcName, type RpcResult } from './schemas.ts';
import type { RpcTransport } from './transport.ts';

/** `path: message; path: message` for a zod error. */
export function describeIssues(error: z.ZodError): string {
  return error.issues.map((issue) => `${issue.path.length > 0 ? issue.path.map(String).join('.') : '(value)'}: ${issue.message}`).join('; ');
}

export async function callRpc<N extends RpcName>(transport: RpcTransport, name: N, args: RpcArgs<N>): Promise<RpcResult<N>> {
  const schema: { args: z.ZodType; result: z.ZodType } = rpcSchemas[name];
  const parsedArgs = schema.args.safeParse(args);
  if (!parsedArgs.success) {
    throw new InvalidArgumentError({
      code: '22023',
      message: `invalid arguments for ${name}`,
      details: describeIssues(parsedArgs.error),
      hint: 'nothing was sent to the database',
    });
  }
  const raw = await transport.rpc(name, parsedArgs.data as Record<string, unknown>);
  const parsedResult = schema.result.safeParse(raw);
  if (!parsedResult.success) {
    throw new UnexpectedResultError({
      code: SdkErrorCode.unexpectedResult,
      message: `${name} answered an unexpected shape`,
      details: describeIssues(parsedResult.error),
      hint: 'the SDK and the database schema disagree: update one of them',
    });
  }
  return parsedResult.data as RpcResult<N>;
}

/** One typed method per public function, named as in SQL. */
export type Rpc = { [N in RpcName]: (args: RpcArgs<N>) => Promise<RpcResult<N>> };

export function createRpc(transport: RpcTransport): Rpc {
  const entries = (Object.keys(rpcSchemas) as RpcName[]).map((name) => [name, (args: RpcArgs<typeof name>) => callRpc(transport, name, args)]);
  return Object.fromEntries(entries) as Rpc;
}
