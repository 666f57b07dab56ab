//! Resources: what can be asked for, and how the gateway reaches it.

use crate::Result;
use crate::Source;
use async_trait::async_trait;
use jitgate_core::names::ResourceName;
use jitgate_core::policy::Resource;
use jitgate_core::Timestamp;

/// Reads outside a transaction.
#[async_trait]
pub trait ResourceReads: Send + Sync {
    async fn resource(&self, name: &ResourceName) -> Result<Option<Resource>>;
    async fn resources(&self) -> Result<Vec<Resource>>;
}

/// Reads and changes inside a [`crate::WriteTx`].
#[async_trait]
pub trait ResourceWrites: Send {
    async fn put_resource(&mut self, resource: &Resource, source: Source, now: Timestamp) -> Result<()>;
    async fn delete_resource(&mut self, name: &ResourceName) -> Result<bool>;
    /// Names of the resources `source` set.
    async fn resources_from(&mut self, source: Source) -> Result<Vec<ResourceName>>;
    /// A resource as this transaction sees it (not what an instance remembers).
    async fn resource(&mut self, name: &ResourceName) -> Result<Option<Resource>>;
}

/// The SQL of this aggregate for one backend, stamped out by `crate::sql::impl_store!` in the
/// backend's module (which supplies the imports and the shared helpers).
macro_rules! resources_sql {
    ($store:ident, $tx:ident, $db:ty, $lock:literal) => {
        fn resource_from(row: &DbRow) -> Result<Resource, StoreError> {
            let spec: String = row.try_get("spec")?;
            serde_json::from_str(&spec).map_err(|e| corrupt("resource", e))
        }

        #[async_trait]
        impl crate::ResourceReads for $store {
            async fn resource(&self, res: &ResourceName) -> Result<Option<Resource>, StoreError> {
                if let Some(map) = self.cache.resources() {
                    return Ok(map.get(res).cloned());
                }
                if let Some(read_at) = self.cache.generation() {
                    let all = self.resources().await?;
                    let map = std::sync::Arc::new(all.into_iter().map(|r| (r.name.clone(), r)).collect::<BTreeMap<_, _>>());
                    self.cache.keep_resources(map.clone(), read_at);
                    return Ok(map.get(res).cloned());
                }
                sqlx::query("SELECT spec FROM resources WHERE name = $1")
                    .bind(res.as_str())
                    .fetch_optional(&self.read)
                    .await?
                    .as_ref()
                    .map(resource_from)
                    .transpose()
            }

            async fn resources(&self) -> Result<Vec<Resource>, StoreError> {
                all(sqlx::query("SELECT spec FROM resources ORDER BY name").fetch_all(&self.read).await?, resource_from)
            }
        }

        #[async_trait]
        impl crate::ResourceWrites for $tx {
            async fn put_resource(&mut self, r: &Resource, source: Source, now: Timestamp) -> Result<(), StoreError> {
                self.directory_changed = true;
                let spec = serde_json::to_string(r).map_err(|e| corrupt("resource", e))?;
                sqlx::query(
                    "INSERT INTO resources (name, spec, source, updated_at) VALUES ($1, $2, $3, $4) \
                     ON CONFLICT (name) DO UPDATE SET spec = excluded.spec, source = excluded.source, updated_at = excluded.updated_at",
                )
                .bind(r.name.as_str())
                .bind(spec)
                .bind(source.as_str())
                .bind(now.as_millis())
                .execute(self.db().await?)
                .await?;
                Ok(())
            }

            async fn delete_resource(&mut self, res: &ResourceName) -> Result<bool, StoreError> {
                self.directory_changed = true;
                let r = sqlx::query("DELETE FROM resources WHERE name = $1").bind(res.as_str()).execute(self.db().await?).await?;
                Ok(r.rows_affected() > 0)
            }

            async fn resource(&mut self, res: &ResourceName) -> Result<Option<Resource>, StoreError> {
                sqlx::query("SELECT spec FROM resources WHERE name = $1")
                    .bind(res.as_str())
                    .fetch_optional(self.db().await?)
                    .await?
                    .as_ref()
                    .map(resource_from)
                    .transpose()
            }

            async fn resources_from(&mut self, source: Source) -> Result<Vec<ResourceName>, StoreError> {
                let rows = sqlx::query("SELECT name FROM resources WHERE source = $1 ORDER BY name")
                    .bind(source.as_str())
                    .fetch_all(self.db().await?)
                    .await?;
                rows.iter().map(|r| name(r.try_get("name")?, "resource")).collect()
            }
        }
    };
}

pub(crate) use resources_sql;
