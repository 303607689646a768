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
  // pouchdb-server does not answer _bulk_docs in the order of the batch: match results by id.
  const write = async (batch) => {
    const byId = new Map(batch.map((doc) => [doc._id, doc]));
    const results = await db.bulkDocs(batch.map((doc) => Object.assign({}, doc)));
    for (const result of results) {
      if (result.error) {
        errors += 1;
        if (errors < 3) console.error(JSON.stringify(result).slice(0, 300));
      } else {
        docs.set(result.id, Object.assign(byId.get(result.id), { _rev: result.rev }));
      }
    }
    written += batch.length;
  };
  for (let i = 0; job.write && i < job.creates.length; i += job.batch) {
    await write(job.creates.slice(i, i + job.batch).map((doc) => Object.assign({}, doc)));
  }
  for (let i = 0; job.write && i < job.edits.length; i += job.batch) {
    // An edit is a new revision of the whole document, based on the revision the phone saw.
    await write(
      job.edits
        .slice(i, i + job.batch)
        .map(([id, field, value]) => Object.assign({}, docs.get(id), { [field]: value })),
    );
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
