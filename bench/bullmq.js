// BullMQ side of the benchmarks. Usage: node bullmq.js submit|throughput PORT N CONCURRENCY
// Prints one JSON line: {"seconds": …}. Jobs are empty; the processor does nothing.
const { Queue, Worker } = require('bullmq');

async function main() {
  const [mode, port, n, conc] = process.argv.slice(2);
  const connection = { host: '127.0.0.1', port: Number(port) };
  const name = `bench-${process.pid}-${Date.now()}`;
  const queue = new Queue(name, { connection });
  await queue.waitUntilReady();
  const jobs = Array.from({ length: Number(n) }, (_, i) => ({ name: 't', data: { i } }));
  const t0 = process.hrtime.bigint();
  if (mode === 'submit') {
    await queue.addBulk(jobs);
    const s = Number(process.hrtime.bigint() - t0) / 1e9;
    console.log(JSON.stringify({ seconds: s }));
    await queue.obliterate({ force: true });
    await queue.close();
    return;
  }
  let done = 0;
  let worker;
  const finished = new Promise((resolve) => {
    worker = new Worker(name, async () => {}, { connection, concurrency: Number(conc) });
    worker.on('completed', () => {
      done += 1;
      if (done === Number(n)) resolve();
    });
  });
  await queue.addBulk(jobs);
  await finished;
  const s = Number(process.hrtime.bigint() - t0) / 1e9;
  console.log(JSON.stringify({ seconds: s }));
  await worker.close();
  await queue.obliterate({ force: true });
  await queue.close();
}

main().then(() => process.exit(0), (e) => { console.error(e); process.exit(1); });
