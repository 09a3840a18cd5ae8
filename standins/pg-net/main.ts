// Runs the pg_net stand-in worker: `tsx standins/pg-net/main.ts` with DATABASE_URL set.
import { startPgNetWorker } from './worker.ts';

const databaseUrl = process.env.DATABASE_URL;
if (!databaseUrl) {
  console.error('pg-net-worker: DATABASE_URL is not set (e.g. postgresql://postgres:postgres@127.0.0.1:54322/postgres)');
  process.exit(2);
}
const quiet = process.env.PG_NET_QUIET === '1';
const worker = await startPgNetWorker({
  databaseUrl,
  concurrency: Number(process.env.PG_NET_CONCURRENCY ?? 64),
  afterResponsesSql: process.env.PG_NET_AFTER_SQL || undefined,
  log: quiet ? undefined : (line) => console.log(`${new Date().toISOString()} ${line}`),
});
console.log(`pg-net-worker: sending queued requests of ${databaseUrl.replace(/:[^:@/]*@/, ':***@')}`);
for (const sig of ['SIGINT', 'SIGTERM'] as const) {
  process.once(sig, () => {
    console.log(`pg-net-worker: ${sig}, finishing requests in flight`);
    void worker.stop().then(() => process.exit(0));
  });
}
