//! Column kinds and the `table!` macro that declares a table once: its Arrow schema, its docs,
//! a typed row struct and a batch builder, all from one declaration.

use std::sync::Arc;

use arrow_array::builder::{
    ArrayBuilder, BooleanBuilder, Float64Builder, Int32Builder, Int64Builder, MapBuilder,
    StringBuilder, UInt32Builder, UInt64Builder,
};
use arrow_schema::{DataType, Field, Fields};

/// One column of a table declaration.
#[derive(Debug, Clone, Copy)]
pub struct Column {
    /// Column name; units are part of the name (`ts_ns`, `bytes`).
    pub name: &'static str,
    /// How the column is stored.
    pub kind: KindId,
    /// Whether the column may be null.
    pub nullable: bool,
    /// One line: meaning and unit.
    pub doc: &'static str,
}

impl Column {
    /// The Arrow field for this column.
    pub fn field(&self) -> Field {
        Field::new(self.name, self.kind.data_type(), self.nullable)
    }
}

/// The storage type of a column, as written in docs and checked against files.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum KindId {
    Int32,
    Int64,
    UInt32,
    UInt64,
    Float64,
    Boolean,
    Utf8,
    /// `Map<Utf8, Int64>`: named integer fields.
    MapInt64,
    /// `Map<Utf8, Utf8>`: named string fields.
    MapUtf8,
}

impl KindId {
    /// The Arrow data type the builders produce for this kind.
    pub fn data_type(self) -> DataType {
        match self {
            KindId::Int32 => DataType::Int32,
            KindId::Int64 => DataType::Int64,
            KindId::UInt32 => DataType::UInt32,
            KindId::UInt64 => DataType::UInt64,
            KindId::Float64 => DataType::Float64,
            KindId::Boolean => DataType::Boolean,
            KindId::Utf8 => DataType::Utf8,
            KindId::MapInt64 => map_type(DataType::Int64),
            KindId::MapUtf8 => map_type(DataType::Utf8),
        }
    }

    /// The name used in generated docs.
    pub fn sql_name(self) -> &'static str {
        match self {
            KindId::Int32 => "Int32",
            KindId::Int64 => "Int64",
            KindId::UInt32 => "UInt32",
            KindId::UInt64 => "UInt64",
            KindId::Float64 => "Float64",
            KindId::Boolean => "Boolean",
            KindId::Utf8 => "Utf8",
            KindId::MapInt64 => "Map<Utf8, Int64>",
            KindId::MapUtf8 => "Map<Utf8, Utf8>",
        }
    }
}

/// The map type exactly as `MapBuilder` produces it (field names `entries`/`keys`/`values`).
fn map_type(value: DataType) -> DataType {
    let entries = Fields::from(vec![
        Field::new("keys", DataType::Utf8, false),
        Field::new("values", value, true),
    ]);
    DataType::Map(
        Arc::new(Field::new("entries", DataType::Struct(entries), false)),
        false,
    )
}

/// A column kind: which builder stores it and which Rust value a row carries for it.
pub trait Kind {
    /// The Arrow builder for this column.
    type Builder: ArrayBuilder;
    /// The value one row carries (borrowed for strings and maps so rows do not allocate).
    type Value<'a>: Copy;
    /// The storage id.
    const ID: KindId;
    /// Whether nulls are allowed.
    const NULLABLE: bool;
    /// A new, empty builder.
    fn builder() -> Self::Builder;
    /// Appends one value.
    fn append(builder: &mut Self::Builder, value: Self::Value<'_>);
}

macro_rules! scalar_kinds {
    ($($kind:ident, $opt:ident, $builder:ty, $value:ty, $id:ident;)*) => {$(
        #[doc = concat!("A non-null `", stringify!($id), "` column.")]
        #[derive(Debug)]
        pub struct $kind;
        impl Kind for $kind {
            type Builder = $builder;
            type Value<'a> = $value;
            const ID: KindId = KindId::$id;
            const NULLABLE: bool = false;
            fn builder() -> $builder {
                <$builder>::new()
            }
            fn append(builder: &mut Self::Builder, value: $value) {
                builder.append_value(value);
            }
        }
        #[doc = concat!("A nullable `", stringify!($id), "` column.")]
        #[derive(Debug)]
        pub struct $opt;
        impl Kind for $opt {
            type Builder = $builder;
            type Value<'a> = Option<$value>;
            const ID: KindId = KindId::$id;
            const NULLABLE: bool = true;
            fn builder() -> $builder {
                <$builder>::new()
            }
            fn append(builder: &mut Self::Builder, value: Option<$value>) {
                builder.append_option(value);
            }
        }
    )*};
}

scalar_kinds! {
    I32, OptI32, Int32Builder, i32, Int32;
    I64, OptI64, Int64Builder, i64, Int64;
    U32, OptU32, UInt32Builder, u32, UInt32;
    U64, OptU64, UInt64Builder, u64, UInt64;
    F64, OptF64, Float64Builder, f64, Float64;
    Bool, OptBool, BooleanBuilder, bool, Boolean;
}

/// A non-null string column.
#[derive(Debug)]
pub struct Str;
impl Kind for Str {
    type Builder = StringBuilder;
    type Value<'a> = &'a str;
    const ID: KindId = KindId::Utf8;
    const NULLABLE: bool = false;
    fn builder() -> StringBuilder {
        StringBuilder::new()
    }
    fn append(builder: &mut Self::Builder, value: &str) {
        builder.append_value(value);
    }
}

/// A nullable string column.
#[derive(Debug)]
pub struct OptStr;
impl Kind for OptStr {
    type Builder = StringBuilder;
    type Value<'a> = Option<&'a str>;
    const ID: KindId = KindId::Utf8;
    const NULLABLE: bool = true;
    fn builder() -> StringBuilder {
        StringBuilder::new()
    }
    fn append(builder: &mut Self::Builder, value: Option<&str>) {
        builder.append_option(value);
    }
}

/// Builder of a `Map<Utf8, V>` column.
pub type MapOf<V> = MapBuilder<StringBuilder, V>;

/// A map of named integer values (never null; empty when there are none).
#[derive(Debug)]
pub struct MapI64;
impl Kind for MapI64 {
    type Builder = MapOf<Int64Builder>;
    type Value<'a> = &'a [(&'a str, i64)];
    const ID: KindId = KindId::MapInt64;
    const NULLABLE: bool = false;
    fn builder() -> Self::Builder {
        MapBuilder::new(None, StringBuilder::new(), Int64Builder::new())
    }
    fn append(builder: &mut Self::Builder, value: Self::Value<'_>) {
        for (key, v) in value {
            builder.keys().append_value(key);
            builder.values().append_value(*v);
        }
        // Appending an entry to a MapBuilder cannot fail when keys and values were pushed in pairs.
        builder
            .append(true)
            .expect("map keys and values are pushed in pairs");
    }
}

/// A map of named string values (never null; empty when there are none).
#[derive(Debug)]
pub struct MapStr;
impl Kind for MapStr {
    type Builder = MapOf<StringBuilder>;
    type Value<'a> = &'a [(&'a str, &'a str)];
    const ID: KindId = KindId::MapUtf8;
    const NULLABLE: bool = false;
    fn builder() -> Self::Builder {
        MapBuilder::new(None, StringBuilder::new(), StringBuilder::new())
    }
    fn append(builder: &mut Self::Builder, value: Self::Value<'_>) {
        for (key, v) in value {
            builder.keys().append_value(key);
            builder.values().append_value(v);
        }
        builder
            .append(true)
            .expect("map keys and values are pushed in pairs");
    }
}

/// Declares a table: a `TableDef` constant, a row struct borrowing its strings, and a builder
/// that turns rows into a `RecordBatch` with exactly the declared schema.
macro_rules! table {
    (
        $(#[doc = $doc:literal])+
        $konst:ident, $row:ident, $builder:ident, $name:literal,
        sort_key = $sort:expr, dictionary = $dict:expr, {
            $($(#[doc = $cdoc:literal])+ $col:ident : $kind:ident,)+
        }
    ) => {
        $(#[doc = $doc])+
        pub const $konst: &$crate::TableDef = &$crate::TableDef {
            name: $name,
            doc: concat!($($doc, "\n"),+),
            sort_key: $sort,
            dictionary: $dict,
            columns: &[$($crate::Column {
                name: stringify!($col),
                kind: <$crate::column::$kind as $crate::column::Kind>::ID,
                nullable: <$crate::column::$kind as $crate::column::Kind>::NULLABLE,
                doc: concat!($($cdoc),+),
            }),+],
        };

        #[doc = concat!("One row of the `", $name, "` table.")]
        #[derive(Debug, Clone, Copy)]
        pub struct $row<'a> {
            $($(#[doc = $cdoc])+ pub $col: <$crate::column::$kind as $crate::column::Kind>::Value<'a>,)+
        }

        #[doc = concat!("Accumulates `", $name, "` rows into record batches.")]
        pub struct $builder {
            len: usize,
            $($col: <$crate::column::$kind as $crate::column::Kind>::Builder,)+
        }

        impl Default for $builder {
            fn default() -> Self {
                $builder {
                    len: 0,
                    $($col: <$crate::column::$kind as $crate::column::Kind>::builder(),)+
                }
            }
        }

        impl std::fmt::Debug for $builder {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.debug_struct(stringify!($builder)).field("len", &self.len).finish()
            }
        }

        impl $builder {
            /// Appends one row.
            pub fn push(&mut self, row: &$row<'_>) {
                $(<$crate::column::$kind as $crate::column::Kind>::append(&mut self.$col, row.$col);)+
                self.len += 1;
            }

            /// Rows appended since the last `finish`.
            pub fn len(&self) -> usize {
                self.len
            }

            /// Whether no row was appended since the last `finish`.
            pub fn is_empty(&self) -> bool {
                self.len == 0
            }

            /// Takes the rows appended so far as one batch and resets the builder.
            pub fn finish(&mut self) -> arrow_array::RecordBatch {
                self.len = 0;
                let columns: Vec<arrow_array::ArrayRef> =
                    vec![$(arrow_array::builder::ArrayBuilder::finish(&mut self.$col)),+];
                arrow_array::RecordBatch::try_new($konst.schema(), columns)
                    .expect("builders produce the declared schema")
            }
        }
    };
}
pub(crate) use table;
