//! Users and secrets in the engine: running `CREATE | ALTER | DROP USER`
//! and `… SECRET`, handing connectors the values their options name
//! (`'k' = SECRET name`), and the system tables `eddy.users` and
//! `eddy.secrets`, which show names and roles only.

use std::collections::BTreeMap;
use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::array::{ArrayRef, StringArray};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::catalog::{Session, TableProvider};
use datafusion::datasource::memory::MemorySourceConfig;
use datafusion::datasource::TableType;
use datafusion::logical_expr::Expr;
use datafusion::physical_plan::ExecutionPlan;

use super::credentials::{Credentials, Role};
use super::{Engine, Outcome};
use crate::catalog::Catalog;
use crate::error::{EddyError, Result};
use crate::sql::access::Access;
use crate::sql::Statement;

fn done(tag: &str) -> Outcome {
    Outcome::Command {
        tag: tag.into(),
        rows: None,
    }
}

/// The secrets each object's options name: object → secret names.
fn secrets_in_use(catalog: &Catalog) -> BTreeMap<String, Vec<String>> {
    let sqls: Vec<(String, String)> =
        catalog.with(|e| e.iter().map(|(n, e)| (n.clone(), e.sql.clone())).collect());
    let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (object, sql) in sqls {
        let refs = match crate::sql::parse(&sql).ok().and_then(|mut v| v.pop()) {
            Some(Statement::CreateStream(c)) => c.secrets,
            Some(Statement::CreateSink(s)) => s.secrets,
            _ => continue,
        };
        for secret in refs.into_values() {
            out.entry(secret).or_default().push(object.clone());
        }
    }
    out
}

/// Register `eddy.users` and `eddy.secrets` (replacing earlier ones).
pub(super) fn register_tables(
    ctx: &datafusion::prelude::SessionContext,
    credentials: &Arc<Credentials>,
    catalog: &Arc<Catalog>,
) -> Result<()> {
    for (name, kind) in [
        ("eddy.users", AccessTableKind::Users),
        ("eddy.secrets", AccessTableKind::Secrets),
    ] {
        let table = AccessTable::new(kind, credentials.clone(), catalog.clone());
        ctx.deregister_table(name)?;
        ctx.register_table(name, Arc::new(table))?;
    }
    Ok(())
}

impl Engine {
    /// Use `credentials` for users and secrets.
    pub(super) fn set_credentials(&mut self, credentials: Arc<Credentials>) -> Result<()> {
        register_tables(&self.ctx, &credentials, &self.catalog)?;
        self.credentials = credentials;
        Ok(())
    }

    /// The server's users and secrets.
    pub fn credentials(&self) -> &Arc<Credentials> {
        &self.credentials
    }

    /// Run a statement about users or secrets. Hashing a password (PBKDF2)
    /// and writing `credentials.json` (fsync) block, so they run on the
    /// blocking pool.
    pub(super) async fn access(&self, a: Access) -> Result<Outcome> {
        if let Access::DropSecrets { names, .. } = &a {
            let used = secrets_in_use(&self.catalog);
            if let Some((secret, objects)) = names
                .iter()
                .find_map(|n| used.get(n).map(|objects| (n, objects)))
            {
                return Err(EddyError::DependentObjects {
                    message: format!(
                        "cannot drop secret \"{secret}\" because other objects use it"
                    ),
                    detail: objects.join(", "),
                });
            }
        }
        let c = self.credentials.clone();
        tokio::task::spawn_blocking(move || run_access(&c, a))
            .await
            .map_err(|e| EddyError::Internal(format!("user or secret statement: {e}")))?
    }

    /// `options` with the values of the secrets that `secrets` names filled
    /// in (for a connector; the result is never stored or shown).
    pub(super) fn with_secrets(
        &self,
        options: &BTreeMap<String, String>,
        secrets: &BTreeMap<String, String>,
    ) -> Result<BTreeMap<String, String>> {
        let mut out = options.clone();
        for (key, secret) in secrets {
            out.insert(key.clone(), self.credentials.secret(secret)?);
        }
        Ok(out)
    }
}

/// Carry out `a` on `c` (blocking: hashing and file writes).
fn run_access(c: &Credentials, a: Access) -> Result<Outcome> {
    let role = |superuser: bool| if superuser { Role::Admin } else { Role::Reader };
    match a {
        Access::CreateUser {
            name,
            if_not_exists,
            password,
            superuser,
        } => {
            c.create_user(&name, password.expose(), role(superuser), if_not_exists)?;
            Ok(done("CREATE ROLE"))
        }
        Access::AlterUser {
            name,
            password,
            superuser,
        } => {
            c.alter_user(
                &name,
                password.as_ref().map(|p| p.expose()),
                superuser.map(role),
            )?;
            Ok(done("ALTER ROLE"))
        }
        Access::DropUsers { names, if_exists } => {
            c.drop_users(&names, if_exists)?;
            Ok(done("DROP ROLE"))
        }
        Access::CreateSecret {
            name,
            if_not_exists,
            value,
        } => {
            c.create_secret(&name, value.expose(), if_not_exists)?;
            Ok(done("CREATE SECRET"))
        }
        Access::AlterSecret { name, value } => {
            c.alter_secret(&name, value.expose())?;
            Ok(done("ALTER SECRET"))
        }
        Access::DropSecrets { names, if_exists } => {
            c.drop_secrets(&names, if_exists)?;
            Ok(done("DROP SECRET"))
        }
    }
}

/// Which credentials table.
#[derive(Debug, Clone, Copy)]
pub enum AccessTableKind {
    /// `eddy.users`: name, role, defined_by.
    Users,
    /// `eddy.secrets`: name, used_by.
    Secrets,
}

/// `eddy.users` or `eddy.secrets`, read live.
pub struct AccessTable {
    kind: AccessTableKind,
    credentials: Arc<Credentials>,
    catalog: Arc<Catalog>,
}

impl std::fmt::Debug for AccessTable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "AccessTable({:?})", self.kind)
    }
}

impl AccessTable {
    /// A provider for `kind`.
    pub fn new(
        kind: AccessTableKind,
        credentials: Arc<Credentials>,
        catalog: Arc<Catalog>,
    ) -> Self {
        AccessTable {
            kind,
            credentials,
            catalog,
        }
    }

    fn columns(&self) -> &'static [&'static str] {
        match self.kind {
            AccessTableKind::Users => &["name", "role", "defined_by"],
            AccessTableKind::Secrets => &["name", "used_by"],
        }
    }

    fn rows(&self) -> Vec<Vec<String>> {
        match self.kind {
            AccessTableKind::Users => self
                .credentials
                .users()
                .into_iter()
                .map(|(n, r, o)| vec![n, r.name().into(), o.name().into()])
                .collect(),
            AccessTableKind::Secrets => {
                let used = secrets_in_use(&self.catalog);
                self.credentials
                    .secret_names()
                    .into_iter()
                    .map(|n| {
                        let by = used.get(&n).map(|o| o.join(", ")).unwrap_or_default();
                        vec![n, by]
                    })
                    .collect()
            }
        }
    }
}

#[async_trait]
impl TableProvider for AccessTable {
    fn schema(&self) -> SchemaRef {
        Arc::new(Schema::new(
            self.columns()
                .iter()
                .map(|c| Field::new(*c, DataType::Utf8, false))
                .collect::<Vec<_>>(),
        ))
    }

    fn table_type(&self) -> TableType {
        TableType::View
    }

    async fn scan(
        &self,
        _state: &dyn Session,
        projection: Option<&Vec<usize>>,
        _filters: &[Expr],
        _limit: Option<usize>,
    ) -> datafusion::error::Result<Arc<dyn ExecutionPlan>> {
        let rows = self.rows();
        let columns: Vec<ArrayRef> = (0..self.columns().len())
            .map(|i| {
                Arc::new(StringArray::from_iter_values(rows.iter().map(|r| &r[i]))) as ArrayRef
            })
            .collect();
        let batch = RecordBatch::try_new(self.schema(), columns)?;
        Ok(MemorySourceConfig::try_new_exec(
            &[vec![batch]],
            self.schema(),
            projection.cloned(),
        )?)
    }
}
