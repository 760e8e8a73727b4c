//! Registering vigil's schemas with a Confluent-API Schema Registry (feature `schema-registry`).

use vigil_registry::{Client, RegistryError, SubjectNameStrategy};

use crate::config::{SdkConfig, WireFormat};

/// Registers vigil's prediction and outcome schemas for `config`'s topics under `strategy` (or
/// finds them registered) and switches `config` to [`WireFormat::Confluent`] with their ids.
/// Call once at start-up, before [`Producer::new`](crate::Producer::new). On an error `config` is
/// left as it was, so a caller may go on in single-object mode (the monitor reads both).
pub async fn register_schemas(
    registry: &Client,
    strategy: SubjectNameStrategy,
    config: &mut SdkConfig,
) -> Result<WireFormat, RegistryError> {
    let ids =
        registry.register_vigil_schemas(strategy, &config.predictions_topic, &config.outcomes_topic).await?;
    config.wire_format =
        WireFormat::Confluent { prediction_schema_id: ids.prediction, outcome_schema_id: ids.outcome };
    Ok(config.wire_format)
}
