//! The profile's marker kinds, each with its schema, and markers as the crate takes them.

use fxprof_processed_profile::{
    CategoryHandle, Marker, MarkerFieldFlags, MarkerFieldFormat, MarkerLocations, MarkerTypeHandle,
    Profile, RuntimeSchemaMarkerField, RuntimeSchemaMarkerSchema, StringHandle,
};
use perfpack_schema::fxhash::FxHashMap;

/// A marker field's value.
#[derive(Debug, Clone)]
pub(super) enum Value {
    Text(String),
    Number(f64),
}

/// The marker kinds, each with its schema.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(super) enum Kind {
    Blocked,
    BlockIo,
    Syscall,
    Wakeup,
    Process,
    Tracepoint,
    Lost,
}

impl Kind {
    pub(super) const ALL: [Kind; 7] = [
        Kind::Blocked,
        Kind::BlockIo,
        Kind::Syscall,
        Kind::Wakeup,
        Kind::Process,
        Kind::Tracepoint,
        Kind::Lost,
    ];

    /// Whether its markers span time (the others are instants).
    pub(super) fn is_interval(self) -> bool {
        !matches!(self, Kind::Wakeup | Kind::Process | Kind::Tracepoint)
    }

    /// Type name, chart label, and fields (key, label, format).
    fn schema(
        self,
    ) -> (
        &'static str,
        &'static str,
        &'static [(&'static str, &'static str, Format)],
    ) {
        use Format::{Bytes, Integer, Ms, Text};
        match self {
            Kind::Blocked => (
                "OffCpu",
                "{marker.data.state}",
                &[
                    ("state", "State at switch-out", Text),
                    ("blocked", "Blocked", Ms),
                ],
            ),
            Kind::BlockIo => (
                "BlockIO",
                "{marker.data.rwbs} {marker.data.bytes}",
                &[
                    ("dev", "Device", Text),
                    ("rwbs", "Operation", Text),
                    ("sector", "Sector", Integer),
                    ("bytes", "Size", Bytes),
                    ("latency", "Latency (issue to completion)", Ms),
                ],
            ),
            Kind::Syscall => (
                "Syscall",
                "{marker.data.syscall}",
                &[
                    ("syscall", "System call", Text),
                    ("ret", "Returned", Integer),
                ],
            ),
            Kind::Wakeup => (
                "Wakeup",
                "{marker.data.waker}",
                &[
                    ("waker", "Woken by (comm)", Text),
                    ("waker_tid", "Waker tid", Integer),
                ],
            ),
            Kind::Process => (
                "Process",
                "{marker.data.event} {marker.data.detail}",
                &[
                    ("event", "Event", Text),
                    ("detail", "Program or child", Text),
                ],
            ),
            Kind::Tracepoint => (
                "Tracepoint",
                "{marker.data.event}",
                &[("event", "Tracepoint", Text), ("fields", "Fields", Text)],
            ),
            Kind::Lost => (
                "Lost",
                "{marker.data.what}",
                &[("what", "What was lost", Text), ("count", "Count", Integer)],
            ),
        }
    }
}

#[derive(Debug, Clone, Copy)]
enum Format {
    Text,
    Integer,
    Bytes,
    /// A duration given in ms.
    Ms,
}

/// A marker as the crate takes it: the registered type and the values in schema order.
pub(super) struct Mark {
    pub(super) kind: MarkerTypeHandle,
    pub(super) name: StringHandle,
    pub(super) category: CategoryHandle,
    pub(super) strings: Vec<Option<StringHandle>>,
    pub(super) numbers: Vec<f64>,
}

impl Marker for Mark {
    fn marker_type(&self, _: &mut Profile) -> MarkerTypeHandle {
        self.kind
    }

    fn name(&self, _: &mut Profile) -> StringHandle {
        self.name
    }

    fn category(&self, _: &mut Profile) -> CategoryHandle {
        self.category
    }

    fn string_field_value(&self, field_index: u32) -> StringHandle {
        // The schema and the values come from the same `Kind::schema`: a text field has text.
        self.strings[field_index as usize].unwrap_or(self.name)
    }

    fn number_field_value(&self, field_index: u32) -> f64 {
        self.numbers[field_index as usize]
    }
}

/// Registers every kind's schema with the profile.
pub(super) fn register(profile: &mut Profile) -> FxHashMap<Kind, MarkerTypeHandle> {
    let mut types: FxHashMap<Kind, MarkerTypeHandle> = FxHashMap::default();
    for kind in Kind::ALL {
        let (type_name, label, fields) = kind.schema();
        let schema = RuntimeSchemaMarkerSchema {
            type_name: type_name.into(),
            description: None,
            locations: MarkerLocations::MARKER_CHART
                | MarkerLocations::MARKER_TABLE
                | MarkerLocations::TIMELINE_OVERVIEW,
            chart_label: Some(label.into()),
            tooltip_label: Some(format!("{{marker.name}}: {label}")),
            table_label: Some(format!("{{marker.name}}: {label}")),
            fields: fields
                .iter()
                .map(|&(key, label, format)| RuntimeSchemaMarkerField {
                    key: key.into(),
                    label: label.into(),
                    format: match format {
                        Format::Text => MarkerFieldFormat::String,
                        Format::Integer => MarkerFieldFormat::Integer,
                        Format::Bytes => MarkerFieldFormat::Bytes,
                        Format::Ms => MarkerFieldFormat::Duration,
                    },
                    flags: match format {
                        Format::Text => MarkerFieldFlags::SEARCHABLE,
                        _ => MarkerFieldFlags::empty(),
                    },
                })
                .collect(),
            graphs: Vec::new(),
        };
        types.insert(kind, profile.register_marker_type(schema));
    }
    types
}

#[cfg(test)]
mod tests {
    #[test]
    fn marker_kinds_have_distinct_type_names() {
        let names: std::collections::BTreeSet<_> =
            super::Kind::ALL.iter().map(|k| k.schema().0).collect();
        assert_eq!(names.len(), super::Kind::ALL.len());
    }
}
