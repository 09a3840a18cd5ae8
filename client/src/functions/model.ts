/**
 * One turn of an OpenAI-compatible chat-completions API (POST {baseUrl}/chat/completions with
 * `stream: true`): the text the model streams, forwarded as it arrives, and the tool calls it
 * asks for, assembled from their deltas. Any server that speaks this wire format will do
 * (OpenAI, a local llama.cpp or vLLM, the scripted model of the tests).
 */
import { createParser } from 'eventsource-parser';
import { z } from 'zod';
import { SdkErrorCode, UpstreamError } from '../errors.ts';

export interface ModelConfig {
  /** e.g. https://api.openai.com/v1 */
  baseUrl: string;
  model: string;
  apiKey?: string;
  /** Per turn (default 60 s). */
  timeoutMs?: number;
}

export interface ToolCall {
  id: string;
  type: 'function';
  function: { name: string; arguments: string };
}

export type ChatMessage =
  | { role: 'system' | 'user'; content: string }
  | { role: 'assistant'; content: string | null; tool_calls?: ToolCall[] }
  | { role: 'tool'; tool_call_id: string; content: string };

export interface ModelTool {
  type: 'function';
  function: { name: string; description?: string; parameters: Record<string, unknown> };
}

export interface ModelTurn {
  content: string;
  toolCalls: ToolCall[];
  finishReason: string | null;
}

const ChunkSchema = z.object({
  choices: z
    .array(
      z.object({
        delta: z
          .object({
            content: z.string().nullish(),
            tool_calls: z
              .array(
                z.object({
                  index: z.number().int().min(0).max(127),
                  id: z.string().nullish(),
                  function: z.object({ name: z.string().nullish(), arguments: z.string().nullish() }).nullish(),
                }),
              )
              .nullish(),
          })
          .nullish(),
        finish_reason: z.string().nullish(),
      }),
    )
    .default([]),
});

/** The `data` of each event of a server-sent event stream, as they arrive (parsed by eventsource-parser). */
async function* sseData(body: ReadableStream<Uint8Array>): AsyncGenerator<string> {
  const decoder = new TextDecoder();
  const arrived: string[] = [];
  const parser = createParser({ onEvent: (event) => void (event.data !== '' && arrived.push(event.data)) });
  for await (const chunk of body as unknown as AsyncIterable<Uint8Array>) {
    parser.feed(decoder.decode(chunk, { stream: true }));
    yield* arrived.splice(0);
  }
}

/**
 * The JSON of a tool list, made once per list: a chat sends the same tools with every turn, and
 * they are most of the request's bytes.
 */
const toolsJson = new WeakMap<readonly ModelTool[], string>();

function requestBody(config: ModelConfig, messages: ChatMessage[], tools: readonly ModelTool[]): string {
  if (tools.length === 0) return JSON.stringify({ model: config.model, messages, stream: true });
  let json = toolsJson.get(tools);
  if (json === undefined) {
    json = JSON.stringify(tools);
    toolsJson.set(tools, json);
  }
  // The same object as {model, messages, stream: true, tools, tool_choice: 'auto'}, its tools spliced in as JSON.
  return `${JSON.stringify({ model: config.model, messages, stream: true }).slice(0, -1)},"tools":${json},"tool_choice":"auto"}`;
}

function modelError(message: string, cause?: unknown): UpstreamError {
  return new UpstreamError({ code: SdkErrorCode.upstream, message: `model: ${message}` }, { cause });
}

/** One turn. `tools` is serialised once per array and reused by later turns: never change an array once passed (chat.ts freezes it). */
export async function completeTurn(
  config: ModelConfig,
  messages: ChatMessage[],
  tools: readonly ModelTool[],
  onText: (text: string) => void,
  options: { fetch?: typeof fetch; signal?: AbortSignal } = {},
): Promise<ModelTurn> {
  const signal = AbortSignal.any([AbortSignal.timeout(config.timeoutMs ?? 60_000), ...(options.signal ? [options.signal] : [])]);
  let response: Response;
  try {
    response = await (options.fetch ?? fetch)(`${config.baseUrl.replace(/\/+$/, '')}/chat/completions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', accept: 'text/event-stream', ...(config.apiKey ? { authorization: `Bearer ${config.apiKey}` } : {}) },
      body: requestBody(config, messages, tools),
      signal,
    });
  } catch (error) {
    throw modelError(`unreachable: ${error instanceof Error ? error.message : String(error)}`, error);
  }
  if (!response.ok || !response.body) {
    throw modelError(`HTTP ${response.status}: ${(await response.text()).slice(0, 500)}`);
  }
  let content = '';
  let finishReason: string | null = null;
  const calls: { id: string; name: string; arguments: string }[] = [];
  try {
    for await (const data of sseData(response.body)) {
      if (data === '[DONE]') break;
      let json: unknown;
      try {
        json = JSON.parse(data);
      } catch (error) {
        throw modelError('a stream chunk is not JSON', error);
      }
      const chunk = ChunkSchema.safeParse(json);
      if (!chunk.success) throw modelError('a stream chunk has an unexpected shape');
      for (const choice of chunk.data.choices) {
        if (choice.delta?.content) {
          content += choice.delta.content;
          onText(choice.delta.content);
        }
        for (const part of choice.delta?.tool_calls ?? []) {
          const call = (calls[part.index] ??= { id: '', name: '', arguments: '' });
          if (part.id) call.id = part.id;
          if (part.function?.name) call.name += part.function.name;
          if (part.function?.arguments) call.arguments += part.function.arguments;
        }
        if (choice.finish_reason) finishReason = choice.finish_reason;
      }
    }
  } catch (error) {
    if (error instanceof UpstreamError) throw error;
    throw modelError(`the stream broke: ${error instanceof Error ? error.message : String(error)}`, error);
  }
  const toolCalls = calls
    .filter((call) => call.name !== '')
    .map((call, index) => ({ id: call.id || `call_${index}`, type: 'function' as const, function: { name: call.name, arguments: call.arguments || '{}' } }));
  return { content, toolCalls, finishReason };
}
