/**
 * The JSON Schema validator every MCP client session of the chat shares. The SDK's Client
 * compiles a validator (Ajv) for the outputSchema of each tool it lists, and builds a new Ajv
 * for each Client: a chat that opens one session per request would compile every tool's schema
 * on every request (a third of the chat function's CPU under load). Here each distinct schema,
 * by its JSON text, is compiled once per process and reused; what is validated, and how, is the
 * SDK's own (AjvJsonSchemaValidator with its default Ajv).
 */
import { AjvJsonSchemaValidator } from '@modelcontextprotocol/sdk/validation/ajv';
import type { JsonSchemaType, JsonSchemaValidator, jsonSchemaValidator } from '@modelcontextprotocol/sdk/validation';

/** Distinct schemas kept; the oldest is dropped past it. */
const MAX_SCHEMAS = 1_000;

export function cachingValidator(max = MAX_SCHEMAS): jsonSchemaValidator {
  const shared = new AjvJsonSchemaValidator();
  const compiled = new Map<string, JsonSchemaValidator<unknown>>();
  return {
    getValidator<T>(schema: JsonSchemaType): JsonSchemaValidator<T> {
      const key = JSON.stringify(schema);
      let validator = compiled.get(key);
      if (!validator) {
        // An Ajv registers a schema's $id: two servers' schemas with the same $id get an Ajv each.
        validator = ('$id' in schema ? new AjvJsonSchemaValidator() : shared).getValidator<unknown>(schema);
        if (compiled.size >= max) compiled.delete(compiled.keys().next().value as string);
        compiled.set(key, validator);
      }
      return validator as JsonSchemaValidator<T>;
    },
  };
}

export const sharedValidator: jsonSchemaValidator = cachingValidator();
