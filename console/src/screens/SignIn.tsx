/**
 * Sign-in for a real Supabase project: a magic link by e-mail through Supabase Auth (the
 * project's Auth settings decide which providers are on; swap in signInWithPassword or
 * signInWithOAuth as the project prefers). Locally, `npm start` prints a link that already
 * carries a session, and this page is not needed.
 */
import { useState } from 'react';
import { supabase } from '../supabase.ts';

export function SignIn() {
  const [email, setEmail] = useState('');
  const [sent, setSent] = useState<string>();
  return (
    <div className="signin">
      <h1>MCP control plane</h1>
      <form onSubmit={async (e) => {
        e.preventDefault();
        const { error } = await supabase.auth.signInWithOtp({ email, options: { emailRedirectTo: window.location.origin } });
        setSent(error ? error.message : `A sign-in link was sent to ${email}.`);
      }}>
        <label>E-mail <input type="email" value={email} onChange={(e) => setEmail(e.target.value)} required /></label>
        <button type="submit" data-safe="">Send a sign-in link</button>
      </form>
      {sent ? <p>{sent}</p> : null}
    </div>
  );
}
