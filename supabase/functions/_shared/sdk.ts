// The SDK, imported from where it lives (client/src), never copied: every function bundles the
// same code the Node suites test. The path is the one place that knows where the SDK is.
export * from '../../../client/src/index.ts';
export { createAuthManagerHandler, type AuthManagerOptions } from '../../../client/src/oauth/flow.ts';
export { createChatHandler, type ChatHandlerOptions } from '../../../client/src/functions/chat.ts';
