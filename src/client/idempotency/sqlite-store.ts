/**
 * sqliteStore(path | database, { table, ttlMs }): processed ids in a SQLite table (better-sqlite3),
 * for consumer.run's idempotency kit.
 *
 * Table (created if missing; one per consumer application: two applications sharing one table would
 * skip each other's messages):
 *   CREATE TABLE <table> (id TEXT PRIMARY KEY, processed_at INTEGER, expires_at INTEGER) WITHOUT ROWID
 *   + an index on expires_at. Times are ms since the epoch. A row past expires_at counts as unseen
 *   and is replaced by the next record of its id; expired rows are deleted
 *   idempotencySqlitePurgeRowsMax at a time, once every idempotencySqlitePurgeRowsMax records, so the
 *   table holds about (ids per ttlMs) rows: bounded by the time to live, default 7 days.
 *
 * Guarantees:
 *  - Handler writes elsewhere (an HTTP call, another database), id recorded by consumer.run after
 *    the handler: at-least-once. A crash between the handler and the record runs the handler again.
 *  - Handler writes in THIS database through `context.transaction((db) => ...)`: the id row is
 *    inserted in the same SQLite transaction as the handler's writes, so both commit or neither
 *    does: an exactly-once effect for those writes, across crashes and across processes sharing the
 *    file. If the id is already recorded (another process or delivery committed it first), the
 *    transaction throws DuplicateDeliveryError before running `fn` and writes nothing; consumer.run
 *    then acks the message as a duplicate. `transaction` may be called once per message; `fn` must
 *    be synchronous (better-sqlite3 transactions are).
 *  - Durability: opened from a path, the database runs in WAL mode with synchronous=FULL: a
 *    committed transaction (and its id row) survives a power loss. A database you pass in keeps the
 *    settings you gave it.
 *
 * better-sqlite3 (a native module) is loaded only when a store opens a path: importing
 * spillway/client does not need it. Synchronous calls: a store runs on the thread that made it.
 */
import type BetterSqlite3 from 'better-sqlite3';
import { DuplicateDeliveryError, IdempotencyStoreError, InvalidArgumentError } from '../../errors.js';
import { idempotencySqlitePurgeRowsMax, idempotencyTtlMsMax } from '../../limits.js';
import type { HandlingOutcome, IdempotencyHandling, IdempotencyStore } from './idempotency-store.js';
import { checkedInteger } from './memory-store.js';

export type SqliteDatabase = BetterSqlite3.Database;

export interface SqliteStoreOptions {
  /** Table of processed ids. Default 'spillway_processed'. Letters, digits and '_', at most 63. */
  table?: string;
  /** How long an id counts as processed, in ms. Default 7 days, at most idempotencyTtlMsMax. */
  ttlMs?: number;
  /** Wall time in ms (tests drive expiry with it). Default Date.now. */
  now?: () => number;
}

/** What sqliteStore adds to the handler's context. */
export interface SqliteHandlingContext {
  /**
   * Runs `fn(db)` in one SQLite transaction that also records the message's id: the handler's
   * writes and the id commit together or roll back together. Throws DuplicateDeliveryError (and
   * runs nothing) when the id is already recorded. Once per message; `fn` must be synchronous.
   */
  transaction<T>(fn: (db: SqliteDatabase) => T): T;
}

export const sqliteStoreDefaults = { table: 'spillway_processed', ttlMs: 7 * 24 * 60 * 60 * 1000 } as const;

const tableNamePattern = /^[A-Za-z_][A-Za-z0-9_]{0,62}$/;

interface Statements {
  seen: BetterSqlite3.Statement<[string, number], unknown>;
  /** Inserts the id, or replaces an expired row of it; changes === 0: a live row exists. */
  record: BetterSqlite3.Statement<[string, number, number], unknown>;
  purge: BetterSqlite3.Statement<[number, number], unknown>;
}

function isDatabase(value: unknown): value is SqliteDatabase {
  const candidate = value as Partial<SqliteDatabase> | null;
  return (
    typeof candidate === 'object' &&
    candidate !== null &&
    typeof candidate.prepare === 'function' &&
    typeof candidate.transaction === 'function' &&
    typeof candidate.exec === 'function'
  );
}

function sqliteError(operation: string, error: unknown): IdempotencyStoreError {
  const text = error instanceof Error ? error.message : String(error);
  return new IdempotencyStoreError(`sqlite idempotency store: ${operation}: ${text}`, { cause: error });
}

export class SqliteStore implements IdempotencyStore<SqliteHandlingContext> {
  readonly kind = 'sqlite';
  readonly table: string;
  readonly ttlMs: number;
  private readonly path: string | null;
  private readonly now: () => number;
  private db: SqliteDatabase | null = null;
  private statements: Statements | null = null;
  private opening: Promise<void> | null = null;
  private closed = false;
  private recordsSincePurge = 0;

  constructor(target: string | SqliteDatabase, options: SqliteStoreOptions = {}) {
    if (options === null || typeof options !== 'object')
      throw new InvalidArgumentError('sqliteStore options must be an object');
    const table = options.table ?? sqliteStoreDefaults.table;
    if (typeof table !== 'string' || !tableNamePattern.test(table))
      throw new InvalidArgumentError(
        `sqliteStore table must be letters, digits and '_' (not first), at most 63, got ${String(table)}`,
      );
    this.table = table;
    this.ttlMs = checkedInteger(
      options.ttlMs,
      'sqliteStore ttlMs',
      1,
      idempotencyTtlMsMax,
      sqliteStoreDefaults.ttlMs,
    );
    if (options.now !== undefined && typeof options.now !== 'function')
      throw new InvalidArgumentError('sqliteStore now must be a function');
    this.now = options.now ?? Date.now;
    if (typeof target === 'string' && target.length > 0) {
      this.path = target;
    } else if (isDatabase(target)) {
      this.path = null;
      this.db = target;
    } else {
      throw new InvalidArgumentError('sqliteStore takes a file path or a better-sqlite3 Database');
    }
  }

  /** The database (opened by open() when the store was given a path): for the handler's own tables. */
  get database(): SqliteDatabase {
    return this.ready().db;
  }

  /** Opens the file (when given a path) and creates the table. Idempotent. */
  open(): Promise<void> {
    if (this.closed) return Promise.reject(sqliteError('open', new Error('the store is closed')));
    this.opening ??= this.openNow();
    return this.opening;
  }

  private async openNow(): Promise<void> {
    if (this.db === null) {
      let Database: typeof BetterSqlite3;
      try {
        Database = (await import('better-sqlite3')).default;
      } catch (error) {
        throw sqliteError('loading better-sqlite3 (npm install better-sqlite3@12)', error);
      }
      try {
        const db = new Database(this.path!);
        db.pragma('journal_mode = WAL');
        db.pragma('synchronous = FULL');
        db.pragma('busy_timeout = 5000');
        this.db = db;
      } catch (error) {
        throw sqliteError(`opening ${this.path}`, error);
      }
    }
    const db = this.db;
    const table = this.table;
    try {
      db.exec(
        `CREATE TABLE IF NOT EXISTS ${table} (id TEXT PRIMARY KEY, processed_at INTEGER NOT NULL, expires_at INTEGER NOT NULL) WITHOUT ROWID;
         CREATE INDEX IF NOT EXISTS ${table}_expires_at ON ${table} (expires_at);`,
      );
      this.statements = {
        seen: db.prepare(`SELECT 1 FROM ${table} WHERE id = ? AND expires_at > ?`),
        record: db.prepare(
          `INSERT INTO ${table} (id, processed_at, expires_at) VALUES (?, ?, ?)
           ON CONFLICT (id) DO UPDATE SET processed_at = excluded.processed_at, expires_at = excluded.expires_at
           WHERE ${table}.expires_at <= excluded.processed_at`,
        ),
        purge: db.prepare(
          `DELETE FROM ${table} WHERE id IN (SELECT id FROM ${table} WHERE expires_at <= ? LIMIT ?)`,
        ),
      };
    } catch (error) {
      throw sqliteError(`creating table ${table}`, error);
    }
  }

  private ready(): { db: SqliteDatabase; statements: Statements } {
    if (this.closed) throw sqliteError('use', new Error('the store is closed'));
    if (this.db === null || this.statements === null)
      throw sqliteError('use', new Error('the store is not open: await store.open() first'));
    return { db: this.db, statements: this.statements };
  }

  async seen(id: string): Promise<boolean> {
    await this.open();
    const { statements } = this.ready();
    try {
      return statements.seen.get(id, this.now()) !== undefined;
    } catch (error) {
      throw sqliteError('seen', error);
    }
  }

  async record(id: string): Promise<void> {
    await this.open();
    this.recordNow(id);
  }

  /** Inserts the id row (in the caller's transaction if one is open); false if a live row exists. */
  private recordNow(id: string): boolean {
    const { statements } = this.ready();
    const now = this.now();
    let inserted: boolean;
    try {
      inserted = statements.record.run(id, now, now + this.ttlMs).changes > 0;
      if (++this.recordsSincePurge >= idempotencySqlitePurgeRowsMax) {
        this.recordsSincePurge = 0;
        statements.purge.run(now, idempotencySqlitePurgeRowsMax);
      }
    } catch (error) {
      throw sqliteError('record', error);
    }
    return inserted;
  }

  handling(id: string): IdempotencyHandling<SqliteHandlingContext> {
    let outcome: HandlingOutcome = 'unrecorded';
    let called = false;
    const transaction = <T>(fn: (db: SqliteDatabase) => T): T => {
      if (called) throw new InvalidArgumentError('context.transaction may be called once per message');
      called = true;
      const { db } = this.ready();
      const run = db.transaction((): T => {
        if (!this.recordNow(id)) throw new DuplicateDeliveryError(id);
        return fn(db);
      });
      try {
        // BEGIN IMMEDIATE: takes the write lock first, so two processes do not deadlock upgrading.
        const result = run.immediate();
        outcome = 'recorded';
        return result;
      } catch (error) {
        if (error instanceof DuplicateDeliveryError) outcome = 'duplicate';
        throw error;
      }
    };
    return { context: { transaction }, outcome: () => outcome };
  }

  /** Deletes up to `max` expired rows now; answers how many. */
  purgeExpired(max: number = idempotencySqlitePurgeRowsMax): number {
    const { statements } = this.ready();
    return statements.purge.run(this.now(), max).changes;
  }

  /** Closes the database if the store opened it (a database you passed in stays open). */
  async close(): Promise<void> {
    if (this.closed) return;
    await this.opening?.catch(() => undefined);
    this.closed = true;
    this.statements = null;
    if (this.path !== null) this.db?.close();
    this.db = null;
  }
}

/** A SQLite idempotency store: see SqliteStore. */
export function sqliteStore(target: string | SqliteDatabase, options: SqliteStoreOptions = {}): SqliteStore {
  return new SqliteStore(target, options);
}
