use apache_avro::Schema;
use apache_avro::schema_compatibility::SchemaCompatibility;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Level {
    None,
    Backward,
    BackwardTransitive,
    Forward,
    ForwardTransitive,
    Full,
    FullTransitive,
}

impl Level {
    /// The platform's policy for event subjects: any consumer reads any producer's events,
    /// whatever the versions either was built with.
    pub(crate) const DEFAULT: Level = Level::FullTransitive;

    const ALL: [Level; 7] = [
        Level::None,
        Level::Backward,
        Level::BackwardTransitive,
        Level::Forward,
        Level::ForwardTransitive,
        Level::Full,
        Level::FullTransitive,
    ];

    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Level::None => "NONE",
            Level::Backward => "BACKWARD",
            Level::BackwardTransitive => "BACKWARD_TRANSITIVE",
            Level::Forward => "FORWARD",
            Level::ForwardTransitive => "FORWARD_TRANSITIVE",
            Level::Full => "FULL",
            Level::FullTransitive => "FULL_TRANSITIVE",
        }
    }

    /// Confluent accepts the names in any case.
    pub(crate) fn parse(name: &str) -> Option<Level> {
        Self::ALL
            .into_iter()
            .find(|level| level.as_str().eq_ignore_ascii_case(name))
    }

    pub(crate) fn is_transitive(self) -> bool {
        matches!(
            self,
            Level::BackwardTransitive | Level::ForwardTransitive | Level::FullTransitive
        )
    }

    fn backward(self) -> bool {
        matches!(
            self,
            Level::Backward | Level::BackwardTransitive | Level::Full | Level::FullTransitive
        )
    }

    fn forward(self) -> bool {
        matches!(
            self,
            Level::Forward | Level::ForwardTransitive | Level::Full | Level::FullTransitive
        )
    }
}

/// Why `candidate` may not follow `previous` (version number and schema) under `level`; empty
/// when it may. The caller picks which versions to check: all of them or a single one.
pub(crate) fn problems(
    level: Level,
    candidate: &Schema,
    previous: &[(i32, Schema)],
) -> Vec<String> {
    let mut problems = Vec::new();
    for (version, old) in previous {
        if level.backward()
            && let Err(e) = SchemaCompatibility::can_read(old, candidate)
        {
            problems.push(format!(
                "the new schema cannot read data written with version {version}: {e}"
            ));
        }
        if level.forward()
            && let Err(e) = SchemaCompatibility::can_read(candidate, old)
        {
            problems.push(format!(
                "version {version} cannot read data written with the new schema: {e}"
            ));
        }
    }
    problems
}
