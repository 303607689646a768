// The peer's client: a PouchDB client writing household documents and edits to pouchdb-server
// through _bulk_docs in batches of 500, then reading the whole _changes feed (with the docs, as a
// replicating phone needs them). Reads a JSON job on stdin, prints a JSON result on stdout.
'use strict';
const PouchDB = require('pouchdb');

async function main() {
  const job = JSON.parse(require('fs').readFileSync(0, 'utf8'));
  const db = new PouchDB(job.url);
  await db.info();
  const docs = new Map();
  let errors = 0;
  let written = 0;
  const writeStart = process.hrtime.bigint();
  for (let i = 0; job.write && i < job.creates.length; i += job.batch) {
    const batch = job.creates.slice(i, i + job.batch);
    const results = await db.bulkDocs(batch);
    results.forEach((result, k) => {
      if (result.error) { errors += 1; if (errors < 5) console.error(JSON.stringify(result)); }
      else docs.set(result.id, Object.assign({}, batch[k], { _rev: result.rev }));
    });
    written += batch.length;
  }
  for (let i = 0; job.write && i < job.edits.length; i += job.batch) {
    // An edit is a new revision of the whole document, based on the revision the phone saw.
    const batch = job.edits.slice(i, i + job.batch).map(([id, field, value]) => {
      const doc = docs.get(id);
      doc[field] = value;
      return doc;
    });
    const results = await db.bulkDocs(batch);
    results.forEach((result, k) => {
      if (result.error) { errors += 1; if (errors < 5) console.error(JSON.stringify(result)); }
      else batch[k]._rev = result.rev;
    });
    written += batch.length;
  }
  const writeSeconds = Number(process.hrtime.bigint() - writeStart) / 1e9;
  const feedStart = process.hrtime.bigint();
  let since = 0;
  let rows = 0;
  while (job.feed) {
    const page = await db.changes({ since, limit: job.page, include_docs: true });
    rows += page.results.length;
    since = page.last_seq;
    if (page.results.length < job.page) break;
  }
  const feedSeconds = Number(process.hrtime.bigint() - feedStart) / 1e9;
  process.stdout.write(JSON.stringify({ written, writeSeconds, rows, feedSeconds, errors }));
}

main().catch((error) => {
  console.error(error);
  process.exit(1);
});
