//! `latchkey db copy`: the whole SQLite database into an empty PostgreSQL one, checked.
//!
//! Owns the list of tables copied (in foreign-key order) and the mapping of each column from
//! SQLite's storage classes to the PostgreSQL column's type, read from `information_schema` of
//! the migrated target. Both schemas are compared with that list first: a table or a column
//! that one backend has and the other lacks stops the copy before anything is written (a
//! migration added on one side only would otherwise lose data silently).
//!
//! The source is read in one read transaction (one snapshot, in pages by `rowid`, so a
//! database of millions of tokens is never held in memory); the target is written in one
//! transaction that first locks every table and checks that each is empty, and commits only
//! after the row counts and checksums match: a failed copy leaves the target as it was.
//! Writes to the source after the snapshot are not copied: the operator stops the server first.
//!
//! Must not decide anything about the data: rows are copied as they are, never interpreted.

use std::collections::{BTreeMap, BTreeSet};

use sha2::{Digest, Sha256};
use sqlx::postgres::PgConnection;
use sqlx::sqlite::SqliteConnection;
use sqlx::{Postgres, Row};

use crate::postgres::PgStore;
use crate::sqlite::SqliteStore;

/// Every table copied, parents before children (`org_features`, `memberships` and
/// `oauth_clients` reference `orgs`; `client_secrets` references `oauth_clients`).
pub const TABLES: &[&str] = &[
    "users",
    "orgs",
    "org_features",
    "memberships",
    "sessions",
    "tokens",
    "events",
    "signing_keys",
    "idempotency_keys",
    "token_addresses",
    "oauth_clients",
    "client_secrets",
    "oauth_grants",
    "auth_codes",
    "refresh_tokens",
    "revoked_access_tokens",
    "outbox",
    "expiry_notices",
    "cancel_links",
    "provisioning_credentials",
    "password_resets",
    "sso_links",
];

/// Tables not copied, and why: sqlx's own bookkeeping (each backend has its migrations); the
/// change log, whose numbers mean something only to the processes of the old database (the
/// target's log starts afresh at 1, and a server starting there has nothing cached); the
/// serving instances, which register themselves when they start on the target.
pub const NOT_COPIED: &[&str] = &["_sqlx_migrations", "changes", "instances"];

/// The tables whose key columns are checksummed on both sides: what a moved deployment cannot
/// do without (its tokens, its clients' secrets, its signing keys, its identity provider's
/// provisioning credentials).
const CHECKSUMMED: &[(&str, &[&str])] = &[
    ("tokens", &["id", "token_hash"]),
    ("client_secrets", &["id", "secret_hash"]),
    ("provisioning_credentials", &["id", "secret_hash"]),
    ("signing_keys", &["kid", "private_key"]),
];

/// Where PostgreSQL has a `seq BIGSERIAL` for the insertion order SQLite keeps as `rowid`
/// (`migrations/postgres/0001_initial.sql`), it is filled from the `rowid`.
const ROWID_COLUMN: &str = "seq";

/// Rows per `INSERT` (PostgreSQL takes at most 65535 parameters in one statement).
const BATCH_ROWS: usize = 1000;
const MAX_PARAMETERS: usize = 60_000;

/// What the copy did (or found, when it refused): rows per table on each side, and the
/// checksums of the key columns of [`CHECKSUMMED`] tables.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CopyReport {
    pub tables: Vec<TableReport>,
    pub checksums: Vec<ChecksumReport>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableReport {
    pub table: String,
    pub source_rows: i64,
    pub target_rows: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChecksumReport {
    pub table: String,
    pub columns: Vec<String>,
    pub source: String,
    pub target: String,
}

impl CopyReport {
    /// Whether every table has as many rows on both sides and every checksum matches.
    pub fn matches(&self) -> bool {
        self.tables.iter().all(|t| t.source_rows == t.target_rows)
            && self.checksums.iter().all(|c| c.source == c.target)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum CopyError {
    /// The target has rows already; nothing was written.
    #[error(
        "the target database is not empty ({}); db copy copies only into an empty database, and nothing was changed",
        .0.iter().map(|(t, n)| format!("{t}: {n} rows")).collect::<Vec<_>>().join(", ")
    )]
    NotEmpty(Vec<(String, i64)>),
    /// The two schemas differ from what this version copies; nothing was written.
    #[error("the schemas do not match: {0}; nothing was copied")]
    Schema(String),
    /// The copy did not check out; the target's transaction was rolled back.
    #[error(
        "the copy does not match the source ({}); the target's transaction was rolled back, nothing was copied",
        mismatches(.0)
    )]
    Mismatch(CopyReport),
    #[error("cannot read the SQLite database: {0}")]
    Source(String),
    #[error("cannot write the PostgreSQL database: {0}")]
    Target(String),
}

fn mismatches(report: &CopyReport) -> String {
    let tables = report
        .tables
        .iter()
        .filter(|t| t.source_rows != t.target_rows)
        .map(|t| {
            format!(
                "{}: {} rows, {} copied",
                t.table, t.source_rows, t.target_rows
            )
        });
    let sums = report
        .checksums
        .iter()
        .filter(|c| c.source != c.target)
        .map(|c| format!("{} checksum {} != {}", c.table, c.source, c.target));
    tables.chain(sums).collect::<Vec<_>>().join(", ")
}

fn source_err(e: sqlx::Error) -> CopyError {
    CopyError::Source(e.to_string())
}

fn target_err(e: sqlx::Error) -> CopyError {
    CopyError::Target(e.to_string())
}

/// A PostgreSQL column's type, as far as the copy reads and writes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// SQLite stores booleans as INTEGER 0 or 1.
    Bool,
    Int,
    Text,
    Bytes,
}

impl Kind {
    fn of(data_type: &str) -> Option<Self> {
        match data_type {
            "boolean" => Some(Self::Bool),
            "bigint" | "integer" | "smallint" => Some(Self::Int),
            "text" | "character varying" => Some(Self::Text),
            "bytea" => Some(Self::Bytes),
            _ => None,
        }
    }
}

/// One column of a copied table: its name on PostgreSQL, what is selected on SQLite for it,
/// and its type.
#[derive(Debug, Clone)]
struct Column {
    name: String,
    source: String,
    kind: Kind,
    /// A generated id (`BIGSERIAL`), whose sequence is moved past the copied maximum.
    serial: bool,
}

#[derive(Debug, Clone)]
enum Value {
    Bool(Option<bool>),
    Int(Option<i64>),
    Text(Option<String>),
    Bytes(Option<Vec<u8>>),
}

/// Opens the SQLite database at `url` to copy from: it must exist (opening would otherwise
/// create an empty one). Its pending migrations are applied, so that it has the schema this
/// version copies.
pub async fn open_source(url: &str) -> Result<SqliteStore, CopyError> {
    let options = <sqlx::sqlite::SqliteConnectOptions as std::str::FromStr>::from_str(url)
        .map_err(|e| CopyError::Source(format!("bad SQLite URL: {e}")))?;
    let path = options.get_filename();
    if !path.is_file() {
        return Err(CopyError::Source(format!(
            "there is no database at {}",
            path.display()
        )));
    }
    SqliteStore::connect(url)
        .await
        .map_err(|e| CopyError::Source(e.to_string()))
}

/// Copies the database of `source` into `target`, whose migrations have run
/// ([`PgStore::connect`]). Refuses unless every Latchkey table of the target is empty.
#[tracing::instrument(skip_all)]
pub async fn copy_sqlite_to_postgres(
    source: &SqliteStore,
    target: &PgStore,
) -> Result<CopyReport, CopyError> {
    // One read transaction: every page of every table comes from the same snapshot (WAL),
    // whatever is written meanwhile.
    let mut src = source.pool().begin().await.map_err(source_err)?;
    let mut dst = target.pool().begin().await.map_err(target_err)?;

    let source_tables = sqlite_tables(&mut src).await?;
    let target_columns = pg_columns(&mut dst).await?;
    check_tables(&source_tables, &target_columns)?;

    // Locked until the commit: two copies, or a server started on the target meanwhile, wait
    // instead of writing beside this one; then the target is checked empty under the lock.
    let owned: Vec<&str> = target_columns
        .keys()
        .map(String::as_str)
        .filter(|t| *t != "_sqlx_migrations")
        .collect();
    let lock = format!(
        "LOCK TABLE {} IN EXCLUSIVE MODE",
        owned
            .iter()
            .map(|t| quote(t))
            .collect::<Vec<_>>()
            .join(", ")
    );
    sqlx::query(sqlx::AssertSqlSafe(lock))
        .execute(&mut *dst)
        .await
        .map_err(target_err)?;
    let mut non_empty = Vec::new();
    for table in &owned {
        let rows = pg_count(&mut dst, table).await?;
        if rows > 0 {
            non_empty.push(((*table).to_owned(), rows));
        }
    }
    if !non_empty.is_empty() {
        return Err(CopyError::NotEmpty(non_empty));
    }

    let mut report = CopyReport::default();
    for table in TABLES {
        let pg = target_columns.get(*table).map(Vec::as_slice).unwrap_or(&[]);
        let sqlite = source_tables.get(*table).cloned().unwrap_or_default();
        let columns = map_columns(table, pg, &sqlite)?;
        let checksummed = CHECKSUMMED.iter().find(|(t, _)| t == table);
        let copied = copy_table(&mut src, &mut dst, table, &columns, checksummed).await?;
        for column in columns.iter().filter(|c| c.serial) {
            let sql = format!(
                "SELECT setval(pg_get_serial_sequence($1, $2), COALESCE((SELECT MAX({c}) FROM {t}), 0) + 1, false)",
                c = quote(&column.name),
                t = quote(table)
            );
            sqlx::query(sqlx::AssertSqlSafe(sql))
                .bind(quote(table))
                .bind(&column.name)
                .execute(&mut *dst)
                .await
                .map_err(target_err)?;
        }
        report.tables.push(TableReport {
            table: (*table).to_owned(),
            source_rows: sqlite_count(&mut src, table).await?,
            target_rows: pg_count(&mut dst, table).await?,
        });
        if let (Some((_, key)), Some(source_sum)) = (checksummed, copied) {
            report.checksums.push(ChecksumReport {
                table: (*table).to_owned(),
                columns: key.iter().map(|c| (*c).to_owned()).collect(),
                source: source_sum,
                target: pg_checksum(&mut dst, table, key, &columns).await?,
            });
        }
    }
    // The change log starts afresh: no change of the old database means anything here.
    sqlx::query("SELECT setval(pg_get_serial_sequence('changes', 'seq'), 1, false)")
        .execute(&mut *dst)
        .await
        .map_err(target_err)?;

    if !report.matches() {
        dst.rollback().await.map_err(target_err)?;
        return Err(CopyError::Mismatch(report));
    }
    dst.commit().await.map_err(target_err)?;
    src.rollback().await.map_err(source_err)?;
    Ok(report)
}

/// A SQL identifier in double quotes (the names come from the two catalogues).
fn quote(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// SQLite's tables and their columns.
async fn sqlite_tables(
    src: &mut SqliteConnection,
) -> Result<BTreeMap<String, BTreeSet<String>>, CopyError> {
    let names: Vec<String> = sqlx::query_scalar(
        "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\'",
    )
    .fetch_all(&mut *src)
    .await
    .map_err(source_err)?;
    let mut tables = BTreeMap::new();
    for name in names {
        let columns: Vec<String> = sqlx::query_scalar("SELECT name FROM pragma_table_info(?)")
            .bind(&name)
            .fetch_all(&mut *src)
            .await
            .map_err(source_err)?;
        tables.insert(name, columns.into_iter().collect());
    }
    Ok(tables)
}

/// PostgreSQL's tables in the current schema, with their columns in order:
/// (name, data type, whether generated by a sequence).
async fn pg_columns(
    dst: &mut PgConnection,
) -> Result<BTreeMap<String, Vec<(String, String, bool)>>, CopyError> {
    let rows = sqlx::query(
        "SELECT c.table_name::TEXT, c.column_name::TEXT, c.data_type::TEXT,
                COALESCE(c.column_default LIKE 'nextval(%', FALSE)
         FROM information_schema.columns c
         JOIN information_schema.tables t
           ON t.table_schema = c.table_schema AND t.table_name = c.table_name
         WHERE c.table_schema = current_schema() AND t.table_type = 'BASE TABLE'
         ORDER BY c.table_name, c.ordinal_position",
    )
    .fetch_all(&mut *dst)
    .await
    .map_err(target_err)?;
    let mut tables: BTreeMap<String, Vec<(String, String, bool)>> = BTreeMap::new();
    for row in rows {
        let table: String = row.try_get(0).map_err(target_err)?;
        tables.entry(table).or_default().push((
            row.try_get(1).map_err(target_err)?,
            row.try_get(2).map_err(target_err)?,
            row.try_get(3).map_err(target_err)?,
        ));
    }
    Ok(tables)
}

/// Every table of the source is copied or knowingly left out, and the target has each copied
/// one. (Tables of the target that Latchkey does not know are left alone.)
fn check_tables(
    source: &BTreeMap<String, BTreeSet<String>>,
    target: &BTreeMap<String, Vec<(String, String, bool)>>,
) -> Result<(), CopyError> {
    let known = |t: &str| TABLES.contains(&t) || NOT_COPIED.contains(&t);
    let unknown: Vec<&str> = source
        .keys()
        .map(String::as_str)
        .filter(|t| !known(t))
        .collect();
    if !unknown.is_empty() {
        return Err(CopyError::Schema(format!(
            "the SQLite database has tables this version does not copy: {}",
            unknown.join(", ")
        )));
    }
    for table in TABLES {
        if !source.contains_key(*table) {
            return Err(CopyError::Schema(format!(
                "the SQLite database has no table {table}"
            )));
        }
        if !target.contains_key(*table) {
            return Err(CopyError::Schema(format!(
                "the PostgreSQL database has no table {table}"
            )));
        }
    }
    Ok(())
}

/// The copy of one table's columns: each PostgreSQL column from the SQLite column of the same
/// name (or `rowid`, for [`ROWID_COLUMN`]), and no SQLite column left behind.
fn map_columns(
    table: &str,
    pg: &[(String, String, bool)],
    sqlite: &BTreeSet<String>,
) -> Result<Vec<Column>, CopyError> {
    let mut columns = Vec::with_capacity(pg.len());
    for (name, data_type, serial) in pg {
        let kind = Kind::of(data_type).ok_or_else(|| {
            CopyError::Schema(format!(
                "{table}.{name} has the type {data_type}, which db copy does not know"
            ))
        })?;
        let source = if sqlite.contains(name) {
            quote(name)
        } else if name == ROWID_COLUMN && kind == Kind::Int {
            "rowid".to_owned()
        } else {
            return Err(CopyError::Schema(format!(
                "{table}.{name} is not in the SQLite database"
            )));
        };
        columns.push(Column {
            name: name.clone(),
            source,
            kind,
            serial: *serial,
        });
    }
    if let Some(lost) = sqlite.iter().find(|s| !pg.iter().any(|(n, _, _)| n == *s)) {
        return Err(CopyError::Schema(format!(
            "{table}.{lost} is not in the PostgreSQL database"
        )));
    }
    Ok(columns)
}

/// Copies one table in pages of `rowid` order; returns the checksum of the key columns read
/// when the table is checksummed.
async fn copy_table(
    src: &mut SqliteConnection,
    dst: &mut PgConnection,
    table: &str,
    columns: &[Column],
    checksummed: Option<&(&str, &[&str])>,
) -> Result<Option<String>, CopyError> {
    let select = format!(
        "SELECT rowid, {} FROM {} WHERE rowid > ? ORDER BY rowid LIMIT ?",
        columns
            .iter()
            .map(|c| c.source.as_str())
            .collect::<Vec<_>>()
            .join(", "),
        quote(table)
    );
    let insert = format!(
        "INSERT INTO {} ({}) ",
        quote(table),
        columns
            .iter()
            .map(|c| quote(&c.name))
            .collect::<Vec<_>>()
            .join(", ")
    );
    let key: Option<Vec<usize>> = checksummed.map(|(_, key)| {
        key.iter()
            .filter_map(|k| columns.iter().position(|c| c.name == *k))
            .collect()
    });
    let mut sum = Checksum::default();
    let page = BATCH_ROWS.min(MAX_PARAMETERS / columns.len().max(1));
    let mut after = i64::MIN;
    loop {
        let rows = sqlx::query(sqlx::AssertSqlSafe(select.clone()))
            .bind(after)
            .bind(i64::try_from(page).unwrap_or(i64::MAX))
            .fetch_all(&mut *src)
            .await
            .map_err(source_err)?;
        let Some(last) = rows.last() else { break };
        after = last.try_get(0).map_err(source_err)?;
        let mut values = Vec::with_capacity(rows.len());
        for row in &rows {
            let mut record = Vec::with_capacity(columns.len());
            for (i, column) in columns.iter().enumerate() {
                record.push(read_value(row, i + 1, column, table)?);
            }
            if let Some(key) = &key {
                sum.add(key.iter().map(|i| &record[*i]));
            }
            values.push(record);
        }
        let mut q = sqlx::QueryBuilder::<Postgres>::new(insert.as_str());
        q.push_values(values, |mut row, record| {
            for value in record {
                match value {
                    Value::Bool(v) => row.push_bind(v),
                    Value::Int(v) => row.push_bind(v),
                    Value::Text(v) => row.push_bind(v),
                    Value::Bytes(v) => row.push_bind(v),
                };
            }
        });
        q.build().execute(&mut *dst).await.map_err(target_err)?;
        if rows.len() < page {
            break;
        }
    }
    Ok(key.map(|_| sum.hex()))
}

fn read_value(
    row: &sqlx::sqlite::SqliteRow,
    index: usize,
    column: &Column,
    table: &str,
) -> Result<Value, CopyError> {
    let bad = |e: sqlx::Error| CopyError::Source(format!("{table}.{}: {e}", column.name));
    Ok(match column.kind {
        Kind::Bool => Value::Bool(match row.try_get::<Option<i64>, _>(index).map_err(bad)? {
            None => None,
            Some(0) => Some(false),
            Some(1) => Some(true),
            Some(other) => {
                return Err(CopyError::Source(format!(
                    "{table}.{} holds {other}, not a boolean (0 or 1)",
                    column.name
                )));
            }
        }),
        Kind::Int => Value::Int(row.try_get(index).map_err(bad)?),
        Kind::Text => Value::Text(row.try_get(index).map_err(bad)?),
        Kind::Bytes => Value::Bytes(row.try_get(index).map_err(bad)?),
    })
}

/// An order-independent checksum of a set of rows: the wrapping sum of the first 8 bytes of
/// each row's SHA-256, and the number of rows (each side reads in the order its index gives).
#[derive(Default)]
struct Checksum {
    sum: u64,
    rows: u64,
}

impl Checksum {
    fn add<'a>(&mut self, values: impl Iterator<Item = &'a Value>) {
        let mut h = Sha256::new();
        for v in values {
            // Length-prefixed, so that no two different rows hash the same bytes.
            let mut field = |bytes: &[u8]| {
                h.update((bytes.len() as u64).to_be_bytes());
                h.update(bytes);
            };
            match v {
                Value::Text(Some(s)) => field(s.as_bytes()),
                Value::Bytes(Some(b)) => field(b),
                Value::Int(Some(i)) => field(&i.to_be_bytes()),
                Value::Bool(Some(b)) => field(&[u8::from(*b)]),
                Value::Text(None) | Value::Bytes(None) | Value::Int(None) | Value::Bool(None) => {
                    h.update(u64::MAX.to_be_bytes());
                }
            }
        }
        let digest = h.finalize();
        let mut first = [0u8; 8];
        first.copy_from_slice(&digest[..8]);
        self.sum = self.sum.wrapping_add(u64::from_be_bytes(first));
        self.rows += 1;
    }

    fn hex(&self) -> String {
        format!("{:016x}-{}", self.sum, self.rows)
    }
}

/// The checksum of `key` over the target's rows, read through a cursor in pages (in no
/// particular order: the checksum does not depend on it).
async fn pg_checksum(
    dst: &mut PgConnection,
    table: &str,
    key: &[&str],
    columns: &[Column],
) -> Result<String, CopyError> {
    let kinds: Vec<Column> = key
        .iter()
        .filter_map(|k| columns.iter().find(|c| c.name == *k).cloned())
        .collect();
    if kinds.len() != key.len() {
        return Err(CopyError::Schema(format!("{table} lacks one of {key:?}")));
    }
    let list = kinds
        .iter()
        .map(|c| quote(&c.name))
        .collect::<Vec<_>>()
        .join(", ");
    let declare = format!(
        "DECLARE latchkey_copy_sum NO SCROLL CURSOR FOR SELECT {list} FROM {}",
        quote(table)
    );
    sqlx::query(sqlx::AssertSqlSafe(declare))
        .execute(&mut *dst)
        .await
        .map_err(target_err)?;
    let fetch = format!("FETCH {BATCH_ROWS} FROM latchkey_copy_sum");
    let mut sum = Checksum::default();
    loop {
        let rows = sqlx::query(sqlx::AssertSqlSafe(fetch.clone()))
            .fetch_all(&mut *dst)
            .await
            .map_err(target_err)?;
        for row in &rows {
            let mut record = Vec::with_capacity(kinds.len());
            for (i, c) in kinds.iter().enumerate() {
                record.push(match c.kind {
                    Kind::Bool => Value::Bool(row.try_get(i).map_err(target_err)?),
                    Kind::Int => Value::Int(row.try_get(i).map_err(target_err)?),
                    Kind::Text => Value::Text(row.try_get(i).map_err(target_err)?),
                    Kind::Bytes => Value::Bytes(row.try_get(i).map_err(target_err)?),
                });
            }
            sum.add(record.iter());
        }
        if rows.len() < BATCH_ROWS {
            break;
        }
    }
    sqlx::query("CLOSE latchkey_copy_sum")
        .execute(&mut *dst)
        .await
        .map_err(target_err)?;
    Ok(sum.hex())
}

async fn sqlite_count(src: &mut SqliteConnection, table: &str) -> Result<i64, CopyError> {
    sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
        "SELECT COUNT(*) FROM {}",
        quote(table)
    )))
    .fetch_one(&mut *src)
    .await
    .map_err(source_err)
}

async fn pg_count(dst: &mut PgConnection, table: &str) -> Result<i64, CopyError> {
    sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
        "SELECT COUNT(*) FROM {}",
        quote(table)
    )))
    .fetch_one(&mut *dst)
    .await
    .map_err(target_err)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_table_of_both_migration_sets_is_copied_or_left_out_knowingly() {
        let mut tables = BTreeSet::new();
        for sql in [
            include_str!("../migrations/postgres/0001_initial.sql"),
            include_str!("../migrations/postgres/0002_instances.sql"),
            include_str!("../migrations/postgres/0003_provisioning.sql"),
            include_str!("../migrations/postgres/0004_scim_groups.sql"),
            include_str!("../migrations/postgres/0005_operator_keys.sql"),
            include_str!("../migrations/postgres/0006_password_resets.sql"),
            include_str!("../migrations/postgres/0007_sso.sql"),
        ] {
            for line in sql.lines() {
                if let Some(name) = line
                    .strip_prefix("CREATE TABLE ")
                    .and_then(|rest| rest.split_whitespace().next())
                {
                    tables.insert(name.to_owned());
                }
            }
        }
        for t in &tables {
            assert!(
                TABLES.contains(&t.as_str()) || NOT_COPIED.contains(&t.as_str()),
                "{t} is neither copied nor left out"
            );
        }
        for t in TABLES {
            assert!(tables.contains(*t), "{t} is not in the PostgreSQL schema");
        }
    }

    #[test]
    fn the_checksum_does_not_depend_on_the_order_of_the_rows() {
        let rows = [
            vec![Value::Text(Some("a".into())), Value::Bytes(Some(vec![1]))],
            vec![Value::Text(Some("b".into())), Value::Bytes(Some(vec![2]))],
        ];
        let (mut one, mut two) = (Checksum::default(), Checksum::default());
        one.add(rows[0].iter());
        one.add(rows[1].iter());
        two.add(rows[1].iter());
        two.add(rows[0].iter());
        assert_eq!(one.hex(), two.hex());
        let mut other = Checksum::default();
        other.add(rows[0].iter());
        other.add([Value::Text(Some("b".into())), Value::Bytes(Some(vec![3]))].iter());
        assert_ne!(one.hex(), other.hex());
    }
}
