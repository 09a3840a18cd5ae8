/**
 * How the gateway (and the chat integration) names the tools, prompts and resources of several
 * servers in one list so that two servers' names cannot collide, reversibly:
 *
 *   <namespace>__<name as the server presents it>
 *
 * The namespace is the server's name in lower case, each run of other characters than a-z and
 * 0-9 turned into one `_`, trimmed (`Demo memory` -> `demo_memory`); a second server with the
 * same slug in one list gets `_2`, a third `_3`, in the list's order. A namespace never contains
 * `__`, so the first `__` of a qualified name ends it: `demo_memory__read_graph` is tool
 * `read_graph` of the server whose namespace is `demo_memory`, and a tool named `a__b` stays
 * `demo_memory__a__b`. Resources use the same prefix before their URI
 * (`demo_memory__file:///notes.txt`), resource templates before their URI template.
 */

export const NAMESPACE_SEPARATOR = '__';

export function slug(name: string): string {
  return name.toLowerCase().replace(/[^a-z0-9]+/g, '_').replace(/^_+|_+$/g, '') || 'server';
}

/** One namespace per item, in order: the slug of its name, `_2`, `_3`... for repeats. */
export function namespaces<T>(items: readonly T[], nameOf: (item: T) => string): Map<string, T> {
  const seen = new Map<string, number>();
  const byNamespace = new Map<string, T>();
  for (const item of items) {
    const base = slug(nameOf(item));
    const count = (seen.get(base) ?? 0) + 1;
    seen.set(base, count);
    byNamespace.set(count === 1 ? base : `${base}_${count}`, item);
  }
  return byNamespace;
}

export function qualify(namespace: string, name: string): string {
  return `${namespace}${NAMESPACE_SEPARATOR}${name}`;
}

/** The namespace and the server's own name, or null when the name carries no namespace. */
export function unqualify(qualified: string): { namespace: string; name: string } | null {
  const at = qualified.indexOf(NAMESPACE_SEPARATOR);
  if (at <= 0 || at + NAMESPACE_SEPARATOR.length >= qualified.length) return null;
  return { namespace: qualified.slice(0, at), name: qualified.slice(at + NAMESPACE_SEPARATOR.length) };
}
