/**
 * Small building blocks shared by the screens: loading data, running an action with its error
 * shown in words, and the two kinds of buttons. Every button is either `Safe` (navigation,
 * reading) or `Mutating` (changes something): a viewer's page renders no Mutating button, and
 * the browser tests check that every button is one of the two.
 */
import { useCallback, useEffect, useRef, useState, type ButtonHTMLAttributes, type ReactNode } from 'react';
import type { ConsoleError } from './supabase.ts';

export function useLoad<T>(load: () => Promise<T>, deps: unknown[], refreshMs?: number | ((value: T | undefined) => number | undefined)) {
  const [data, setData] = useState<T>();
  const [error, setError] = useState<ConsoleError>();
  const [tick, setTick] = useState(0);
  const latest = useRef(load);
  latest.current = load;
  const reload = useCallback(() => setTick((t) => t + 1), []);
  useEffect(() => {
    let live = true;
    latest.current().then(
      (value) => { if (live) { setData(value); setError(undefined); } },
      (e: ConsoleError) => { if (live) setError(e); },
    );
    return () => { live = false; };
  }, [...deps, tick]);
  useEffect(() => {
    const every = typeof refreshMs === 'function' ? refreshMs(data) : refreshMs;
    if (!every) return;
    const timer = setTimeout(reload, every);
    return () => clearTimeout(timer);
  }, [data, tick, refreshMs, reload]);
  return { data, error, reload };
}

/** Runs an action; its error stays on screen in words (message, SQLSTATE, hint) until the next one. */
export function useAction() {
  const [error, setError] = useState<ConsoleError>();
  const [busy, setBusy] = useState<string>();
  const run = useCallback(async (label: string, action: () => Promise<unknown>): Promise<boolean> => {
    setBusy(label);
    setError(undefined);
    try {
      await action();
      return true;
    } catch (e) {
      setError(e as ConsoleError);
      return false;
    } finally {
      setBusy(undefined);
    }
  }, []);
  return { run, busy, error, clear: () => setError(undefined) };
}

export function ErrorNote({ error }: { error?: ConsoleError }) {
  if (!error) return null;
  return (
    <div className="error" role="alert" data-code={error.code}>
      <strong>{error.message}</strong>
      {error.code ? <code> {error.code}</code> : null}
      {error.hint ? <div className="hint">{error.hint}</div> : null}
      {error.details ? <div className="hint">{error.details}</div> : null}
    </div>
  );
}

type ButtonProps = ButtonHTMLAttributes<HTMLButtonElement> & { children: ReactNode };

/** A button that only navigates or reads. */
export function Safe(props: ButtonProps) {
  return <button type="button" data-safe="" {...props} />;
}

/** A button that changes something in the database. */
export function Mutating(props: ButtonProps & { busy?: boolean }) {
  const { busy, className, ...rest } = props;
  return <button type="button" data-mutates="" className={`${className ?? ''}${busy ? ' busy' : ''}`} {...rest} />;
}

export function short(id: string | null | undefined): string {
  return id ? id.slice(0, 8) : '—';
}

export function when(ts: string | null | undefined): string {
  if (!ts) return '—';
  const d = new Date(ts);
  return d.toISOString().replace('T', ' ').slice(0, 19) + 'Z';
}

export function Section({ title, children, actions }: { title: string; children: ReactNode; actions?: ReactNode }) {
  return (
    <section>
      <header className="section-head"><h2>{title}</h2><div>{actions}</div></header>
      {children}
    </section>
  );
}
