use anyhow::Context;
use vigil_store::{ServerVersion, Store};

use crate::config::Config;

#[derive(clap::Args)]
pub struct Args {
    /// Print the DDL for a server version (e.g. 18.16 or 24.8) instead of running it.
    #[arg(long, value_name = "SERVER_VERSION")]
    print_ddl: Option<String>,
}

pub async fn run(config: &Config, args: Args) -> anyhow::Result<()> {
    let store = Store::new(config.store_config());
    if let Some(version) = args.print_ddl {
        let version = ServerVersion::parse(&version)
            .with_context(|| format!("--print-ddl {version:?}: expected a version like 24.8"))?;
        let database = &config.clickhouse.database;
        println!(
            "{};\n\n{};\n",
            vigil_store::create_database(database),
            vigil_store::migrations_table(database)
        );
        for migration in vigil_store::migrations(version, &store.schema_options()) {
            println!("-- {} {}\n{};\n", migration.id, migration.name, migration.sql);
        }
        return Ok(());
    }
    let report = store.migrate().await.with_context(|| format!("migrating {}", config.clickhouse.url))?;
    let version = report.server_version;
    if !version.is_modern() && config.clickhouse.retention_days > 0 {
        tracing::warn!(%version, "this server has no TTL: clickhouse.retention_days is not applied");
    }
    println!(
        "clickhouse {version} at {}: database {} ready ({} applied, {} already present)",
        config.clickhouse.url,
        config.clickhouse.database,
        report.applied.len(),
        report.already_applied.len()
    );
    Ok(())
}
