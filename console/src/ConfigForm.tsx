/**
 * A form generated from a catalog entry's configuration JSON Schema (objects, strings with
 * enum or pattern, numbers, booleans, arrays of strings). Fields marked `"writeOnly": true`
 * are secrets: a password input that starts empty whatever is stored, says only whether a
 * value is set, and sends a value only when one is typed (set or replace). What is stored for
 * an untouched secret is sent back as it was read, never shown: the database keeps the value
 * (or its Vault reference) and decides what an API role may read.
 */
import type { JsonObject } from '../../client/src/schemas.ts';
import type { JsonSchema } from './types.ts';

export type ConfigValue = Record<string, unknown>;

const asJson = (v: ConfigValue): JsonObject => v as JsonObject;

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** The stored configuration with every secret removed: what the form may show. */
export function visibleConfig(schema: JsonSchema, value: unknown): ConfigValue {
  const out: ConfigValue = {};
  if (!isObject(value)) return out;
  for (const [key, v] of Object.entries(value)) {
    const field = schema.properties?.[key];
    if (field?.writeOnly) continue;
    out[key] = field?.type === 'object' ? visibleConfig(field, v) : v;
  }
  return out;
}

/**
 * Which secrets have a stored value (path → set), from the instance's secret_fields: the
 * values themselves are in Vault and never reach the page.
 */
export function secretsSet(secretFields: Record<string, unknown> | null | undefined): Record<string, boolean> {
  return Object.fromEntries(Object.keys(secretFields ?? {}).map((path) => [path, true]));
}

/**
 * What to send: the edited visible fields, each typed secret, and each untouched secret as it
 * was stored. Empty optional fields are left out.
 */
export function mergeConfig(schema: JsonSchema, edited: unknown, stored: unknown): JsonObject {
  return asJson(merge(schema, edited, stored));
}

function merge(schema: JsonSchema, edited: unknown, stored: unknown): ConfigValue {
  const out: ConfigValue = {};
  for (const [key, field] of Object.entries(schema.properties ?? {})) {
    const e = isObject(edited) ? edited[key] : undefined;
    const s = isObject(stored) ? stored[key] : undefined;
    if (field.type === 'object') {
      const merged = merge(field, e, s);
      if (Object.keys(merged).length > 0 || (schema.required ?? []).includes(key)) out[key] = merged;
    } else if (field.writeOnly) {
      if (typeof e === 'string' && e !== '') out[key] = e;
      else if (s !== undefined) out[key] = s;
    } else if (e !== undefined && e !== '' && !(Array.isArray(e) && e.length === 0 && !(schema.required ?? []).includes(key))) {
      out[key] = e;
    }
  }
  return out;
}

interface FieldProps { name: string; path: string; schema: JsonSchema; value: unknown; required: boolean; secrets: Record<string, boolean>; onChange: (v: unknown) => void }

function Field({ name, path, schema, value, required, secrets, onChange }: FieldProps) {
  const label = <span className="field-name">{name}{required ? ' *' : ''}</span>;
  const help = schema.description ? <small>{schema.description}</small> : null;
  if (schema.type === 'object') {
    return (
      <fieldset data-field={path}>
        <legend>{name}</legend>{help}
        <Fields schema={schema} value={value} onChange={onChange} secrets={secrets} prefix={`${path}.`} />
      </fieldset>
    );
  }
  if (schema.writeOnly) {
    const set = secrets[path];
    return (
      <label data-field={path} data-secret="">
        {label} <span className="badge secret">{set ? 'secret set' : 'secret not set'}</span>
        <input type="password" autoComplete="new-password" value={typeof value === 'string' ? value : ''}
          placeholder={set ? 'type a new value to replace it' : 'type the value to set it'} onChange={(e) => onChange(e.target.value)} />
        {help}
      </label>
    );
  }
  if (schema.type === 'boolean') {
    return <label data-field={path}><input type="checkbox" checked={value === true} onChange={(e) => onChange(e.target.checked)} /> {label}{help}</label>;
  }
  if (schema.enum) {
    return (
      <label data-field={path}>{label}
        <select value={value === undefined ? '' : String(value)} onChange={(e) => onChange(e.target.value === '' ? undefined : e.target.value)}>
          <option value="">(unset)</option>
          {schema.enum.map((v) => <option key={String(v)} value={String(v)}>{String(v)}</option>)}
        </select>{help}
      </label>
    );
  }
  if (schema.type === 'array') {
    const list = Array.isArray(value) ? (value as unknown[]).map(String) : [];
    if (schema.maxItems === 0) return null;
    return (
      <label data-field={path}>{label} <small>(one per line)</small>
        <textarea rows={Math.max(2, list.length + 1)} value={list.join('\n')}
          onChange={(e) => onChange(e.target.value.split('\n').map((s) => s.trim()).filter(Boolean))} />{help}
      </label>
    );
  }
  if (schema.type === 'integer' || schema.type === 'number') {
    return <label data-field={path}>{label}<input type="number" value={typeof value === 'number' ? value : ''} onChange={(e) => onChange(e.target.value === '' ? undefined : Number(e.target.value))} />{help}</label>;
  }
  return (
    <label data-field={path}>{label}
      <input value={typeof value === 'string' ? value : ''} onChange={(e) => onChange(e.target.value)} placeholder={schema.pattern ? `matches ${schema.pattern}` : ''} />{help}
    </label>
  );
}

export function Fields({ schema, value, onChange, secrets, prefix = '' }: { schema: JsonSchema; value: unknown; onChange: (v: ConfigValue) => void; secrets: Record<string, boolean>; prefix?: string }) {
  const current = isObject(value) ? value : {};
  return (
    <div className="fields">
      {Object.entries(schema.properties ?? {}).map(([key, field]) => (
        <Field key={key} name={key} path={prefix + key} schema={field} value={current[key]} required={(schema.required ?? []).includes(key)} secrets={secrets}
          onChange={(v) => onChange({ ...current, [key]: v })} />
      ))}
    </div>
  );
}
