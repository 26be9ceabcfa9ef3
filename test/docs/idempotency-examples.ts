/**
 * The runnable examples of docs/IDEMPOTENCY.md. Each region between `// example: NAME` and
 * `// end example` appears verbatim in the document (test/docs/idempotency.test.ts checks it and
 * runs each example with every message delivered twice).
 */
import type Database from 'better-sqlite3';
import {
  type ConsumedMessage,
  type RunContext,
  type SqliteHandlingContext,
  type SqliteStore,
  sqliteStore,
} from '../../src/client/index.js';

// example: schema
/** A transfer message: `{"id":"transfer-17","account":"alice","amount":18}`. */
export interface Transfer {
  id: string;
  account: string;
  amount: number;
}

export function transferOf(message: ConsumedMessage): Transfer {
  return JSON.parse(message.value!.toString()) as Transfer;
}

export function createBank(db: Database.Database): void {
  db.exec(`
    CREATE TABLE IF NOT EXISTS accounts (name TEXT PRIMARY KEY, balance INTEGER NOT NULL DEFAULT 0,
                                         version INTEGER NOT NULL DEFAULT 0);
    CREATE TABLE IF NOT EXISTS payments (transfer_id TEXT PRIMARY KEY, account TEXT NOT NULL,
                                         amount INTEGER NOT NULL);`);
}
// end example

// example: unique-constraint
/**
 * Pattern 1, unique constraint: the transfer id is the primary key of `payments`. A duplicate's
 * INSERT changes nothing, and then the balance is not touched either (same transaction).
 */
export function uniqueConstraintHandler(db: Database.Database): (message: ConsumedMessage) => void {
  const insertPayment = db.prepare(
    'INSERT INTO payments (transfer_id, account, amount) VALUES (?, ?, ?) ON CONFLICT (transfer_id) DO NOTHING',
  );
  const credit = db.prepare(
    'INSERT INTO accounts (name, balance) VALUES (?, ?) ON CONFLICT (name) DO UPDATE SET balance = balance + excluded.balance',
  );
  const apply = db.transaction((transfer: Transfer) => {
    if (insertPayment.run(transfer.id, transfer.account, transfer.amount).changes === 0) return; // a duplicate
    credit.run(transfer.account, transfer.amount);
  });
  return (message) => apply(transferOf(message));
}
// end example

// example: optimistic-lock
/** A versioned change: `version` is the account's version once applied (1, 2, 3... per account). */
export interface VersionedChange {
  account: string;
  version: number;
  amount: number;
}

/**
 * Pattern 2, optimistic lock: a change applies only to the version it was made for. A duplicate
 * finds the account already at (or past) its version and changes nothing; a change that arrives
 * before its predecessor throws, so the message is nacked and comes again later.
 */
export function optimisticLockHandler(db: Database.Database): (message: ConsumedMessage) => void {
  const update = db.prepare(
    'UPDATE accounts SET balance = balance + ?, version = ? WHERE name = ? AND version = ?',
  );
  const current = db.prepare<[string], { version: number }>('SELECT version FROM accounts WHERE name = ?');
  return (message) => {
    const change = JSON.parse(message.value!.toString()) as VersionedChange;
    if (update.run(change.amount, change.version, change.account, change.version - 1).changes === 1) return;
    const version = current.get(change.account)?.version ?? 0;
    if (version >= change.version) return; // applied before: a duplicate
    throw new Error(`${change.account} is at version ${version}: change ${change.version} must wait`);
  };
}
// end example

// example: dedup-store
/**
 * Pattern 3, the dedup store: sqliteStore keeps processed ids in the bank's own database, and
 * `transaction` writes the id in the same SQLite transaction as the balance: both or neither.
 * Use it with `consumer.run({ handler: dedupStoreHandler, idempotency: store })`.
 */
export function bankStore(db: Database.Database): SqliteStore {
  return sqliteStore(db, { table: 'bank_processed' });
}

export function dedupStoreHandler(
  message: ConsumedMessage,
  context: RunContext<SqliteHandlingContext>,
): void {
  const transfer = transferOf(message);
  context.transaction((db) => {
    db.prepare(
      'INSERT INTO accounts (name, balance) VALUES (?, ?) ON CONFLICT (name) DO UPDATE SET balance = balance + excluded.balance',
    ).run(transfer.account, transfer.amount);
  });
}
// end example
