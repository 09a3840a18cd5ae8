/**
 * The shared JSON Schema validator of the chat's MCP sessions: each distinct schema compiled
 * once, validation unchanged, and schemas that reuse an $id kept apart.
 */
import { describe, expect, it } from 'vitest';
import { cachingValidator } from './validator.ts';

const point = { type: 'object', properties: { x: { type: 'number' } }, required: ['x'] } as const;

describe('cachingValidator', () => {
  it('compiles a schema once: an equal schema (another object) gets the same validator', () => {
    const validators = cachingValidator();
    const first = validators.getValidator(structuredClone(point));
    expect(validators.getValidator(structuredClone(point))).toBe(first);
    expect(validators.getValidator({ ...point, required: [] })).not.toBe(first);
  });

  it('validates as the SDK does: a wrong value is refused with its reason', () => {
    const validate = cachingValidator().getValidator<{ x: number }>(structuredClone(point));
    expect(validate({ x: 1 })).toEqual({ valid: true, data: { x: 1 }, errorMessage: undefined });
    const refused = validate({ x: 'one' });
    expect(refused.valid).toBe(false);
    expect(refused.errorMessage).toContain('must be number');
  });

  it('keeps two servers’ schemas with the same $id apart', () => {
    const validators = cachingValidator();
    const numbers = validators.getValidator({ $id: 'https://example.com/result.json', type: 'number' });
    const strings = validators.getValidator({ $id: 'https://example.com/result.json', type: 'string' });
    expect([numbers(1).valid, numbers('a').valid, strings('a').valid, strings(1).valid]).toEqual([true, false, true, false]);
  });

  it('forgets the oldest schema past its bound', () => {
    const validators = cachingValidator(2);
    const first = validators.getValidator({ type: 'number' });
    validators.getValidator({ type: 'string' });
    validators.getValidator({ type: 'boolean' });
    expect(validators.getValidator({ type: 'number' })).not.toBe(first);
  });
});
