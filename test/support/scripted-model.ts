/**
 * A small OpenAI-compatible chat-completions server whose replies a test scripts: tool calls,
 * then text. It speaks the streaming wire format (`stream: true`: server-sent `data:` chunks
 * with `delta.content` and `delta.tool_calls` split across chunks, then `data: [DONE]`), and
 * records every request, so a test can read what the model was shown (the tools, a refusal).
 * Node-only; tests and benchmarks only. Nothing else in the chat's path is scripted.
 */
import http from 'node:http';
import type { AddressInfo } from 'node:net';

export interface ModelRequest {
  model: string;
  messages: { role: string; content: string | null; tool_call_id?: string; tool_calls?: { id: string; function: { name: string; arguments: string } }[] }[];
  tools?: { type: 'function'; function: { name: string; description?: string; parameters: unknown } }[];
  stream?: boolean;
}

export type ModelReply = { text: string } | { toolCalls: { name: string; arguments: Record<string, unknown> }[] };

/** The reply to a request: by the request itself (what it was shown) and its index in this server's life. */
export type ModelScript = (request: ModelRequest, index: number) => ModelReply | Promise<ModelReply>;

export interface ScriptedModel {
  /** The base URL, as OPENAI_BASE_URL takes it (…/v1). */
  baseUrl: string;
  requests: ModelRequest[];
  /** For each request (same index): ms from its arrival to the end of the answer, the model's own time. */
  durations: number[];
  /** Replaces the script. */
  setScript(script: ModelScript): void;
  /** Time the model "thinks" before answering each request (default 0). */
  setLatency(ms: number): void;
  close(): Promise<void>;
}

function chunk(res: http.ServerResponse, delta: Record<string, unknown>, finishReason: string | null = null): void {
  res.write(`data: ${JSON.stringify({ id: 'chatcmpl-scripted', object: 'chat.completion.chunk', choices: [{ index: 0, delta, finish_reason: finishReason }] })}\n\n`);
}

export async function startScriptedModel(script: ModelScript, options: { apiKey?: string } = {}): Promise<ScriptedModel> {
  const requests: ModelRequest[] = [];
  const durations: number[] = [];
  let current = script;
  let latencyMs = 0;
  const server = http.createServer((req, res) => {
    const body: Buffer[] = [];
    req.on('data', (c: Buffer) => body.push(c));
    req.on('end', () => {
      const arrived = performance.now();
      void (async () => {
        if (req.method !== 'POST' || req.url !== '/v1/chat/completions') {
          res.writeHead(404, { 'content-type': 'application/json' }).end(JSON.stringify({ error: { message: 'not found' } }));
          return;
        }
        if (options.apiKey !== undefined && req.headers.authorization !== `Bearer ${options.apiKey}`) {
          res.writeHead(401, { 'content-type': 'application/json' }).end(JSON.stringify({ error: { message: 'bad api key' } }));
          return;
        }
        const request = JSON.parse(Buffer.concat(body).toString('utf8')) as ModelRequest;
        const index = requests.push(request) - 1;
        const reply = await current(request, index);
        if (latencyMs > 0) await new Promise((resolve) => setTimeout(resolve, latencyMs));
        res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache' });
        chunk(res, { role: 'assistant', content: '' });
        if ('text' in reply) {
          // In a few pieces, as a model streams.
          for (const piece of reply.text.match(/.{1,12}/gs) ?? []) chunk(res, { content: piece });
          chunk(res, {}, 'stop');
        } else {
          reply.toolCalls.forEach((call, i) => {
            const args = JSON.stringify(call.arguments);
            const half = Math.ceil(args.length / 2);
            chunk(res, { tool_calls: [{ index: i, id: `call_${index}_${i}`, type: 'function', function: { name: call.name, arguments: args.slice(0, half) } }] });
            chunk(res, { tool_calls: [{ index: i, function: { arguments: args.slice(half) } }] });
          });
          chunk(res, {}, 'tool_calls');
        }
        res.end('data: [DONE]\n\n');
        durations[index] = performance.now() - arrived;
      })().catch((error: unknown) => {
        if (!res.headersSent) res.writeHead(500, { 'content-type': 'application/json' });
        res.end(JSON.stringify({ error: { message: String(error) } }));
      });
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    baseUrl: `http://127.0.0.1:${(server.address() as AddressInfo).port}/v1`,
    requests,
    durations,
    setScript: (next) => {
      current = next;
    },
    setLatency: (ms) => {
      latencyMs = ms;
    },
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

/** The events of a server-sent event stream, parsed: [{event, data}]. */
export function parseSse(text: string): { event: string; data: unknown }[] {
  return text
    .split(/\n\n/)
    .filter((block) => block.trim() !== '')
    .map((block) => {
      const event = /^event: (.*)$/m.exec(block)?.[1] ?? 'message';
      const data = block
        .split('\n')
        .filter((line) => line.startsWith('data: '))
        .map((line) => line.slice(6))
        .join('\n');
      return { event, data: JSON.parse(data) as unknown };
    });
}
