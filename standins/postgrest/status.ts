/**
 * PostgREST's HTTP status for an error code, as its documented table has it (references/errors):
 * 42501 is 401 for anon and 403 otherwise; P0001 (a bare RAISE) 400; 23503 and 23505 409;
 * any other P0 code (P0002 no_data_found among them) 500; PGRST3xx (JWT) 401.
 */
export function postgrestStatus(code: string, role: string): number {
  if (code === '42501') return role === 'anon' ? 401 : 403;
  if (code.startsWith('PGRST3')) return 401;
  if (code === 'PGRST202' || code === 'PGRST205') return 404;
  if (code === 'PGRST203') return 300;
  if (code === 'PGRST116') return 406;
  if (code === 'P0001') return 400;
  if (code === '23503' || code === '23505') return 409;
  if (code === '25006') return 405;
  if (code === '42883' || code === '42P01') return 404;
  const prefix = code.slice(0, 2);
  if (prefix === '08' || prefix === '53') return 503;
  if (prefix === '0L' || prefix === '0P' || prefix === '28') return 403;
  if (prefix === '54') return 413;
  if (['09', '25', '2D', '38', '39', '3B', '40', '55', '57', '58', 'F0', 'HV', 'P0', 'XX'].includes(prefix)) return 500;
  return 400;
}
