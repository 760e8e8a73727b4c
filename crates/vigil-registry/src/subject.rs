/// How a producer names the subject a schema is registered under: Confluent's three strategies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SubjectNameStrategy {
    /// `<topic>-value`: one schema lineage per topic (Confluent's default, and vigil's).
    #[default]
    TopicName,
    /// `<record full name>`, e.g. `vigil.v1.PredictionEvent`: one lineage per type, any topic.
    RecordName,
    /// `<topic>-<record full name>`.
    TopicRecordName,
}

impl SubjectNameStrategy {
    /// Parses `topic`, `record` or `topic_record` (the names in vigil's configuration).
    pub fn parse(name: &str) -> Option<Self> {
        match name {
            "topic" => Some(Self::TopicName),
            "record" => Some(Self::RecordName),
            "topic_record" => Some(Self::TopicRecordName),
            _ => None,
        }
    }
}

/// The subject for message values of record `full_name` on `topic`.
pub fn subject(strategy: SubjectNameStrategy, topic: &str, full_name: &str) -> String {
    match strategy {
        SubjectNameStrategy::TopicName => format!("{topic}-value"),
        SubjectNameStrategy::RecordName => full_name.to_owned(),
        SubjectNameStrategy::TopicRecordName => format!("{topic}-{full_name}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subjects_follow_the_confluent_strategies() {
        let name = "vigil.v1.PredictionEvent";
        let topic = "vigil.predictions.v1";
        assert_eq!(subject(SubjectNameStrategy::TopicName, topic, name), "vigil.predictions.v1-value");
        assert_eq!(subject(SubjectNameStrategy::RecordName, topic, name), name);
        assert_eq!(
            subject(SubjectNameStrategy::TopicRecordName, topic, name),
            "vigil.predictions.v1-vigil.v1.PredictionEvent"
        );
        assert_eq!(SubjectNameStrategy::parse("topic_record"), Some(SubjectNameStrategy::TopicRecordName));
        assert_eq!(SubjectNameStrategy::parse("TopicName"), None);
    }
}
