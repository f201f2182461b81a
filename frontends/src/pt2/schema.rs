//! The JSON schema of `torch.export` archives (`torch/_export/serde/schema.py`, schema 8.x).
//!
//! Only what the importer reads is typed; everything else is skipped. Union types are JSON
//! objects with exactly one key (`{"as_tensor": {"name": "x"}}`), which is serde's externally
//! tagged enum representation.

use std::collections::BTreeMap;

use serde::de::IgnoredAny;
use serde::{Deserialize, Deserializer};

/// `ExportedProgram`: the top-level object of `models/<name>.json`.
#[derive(Debug, Deserialize)]
pub struct ExportedProgram {
    pub graph_module: GraphModule,
    #[serde(default)]
    pub range_constraints: BTreeMap<String, RangeConstraint>,
    #[serde(default)]
    pub schema_version: Option<SchemaVersion>,
}

#[derive(Debug, Deserialize)]
pub struct SchemaVersion {
    pub major: i64,
    #[allow(dead_code)]
    pub minor: i64,
}

/// `min_val`/`max_val` are Python ints; unbounded is `null` (and anything that does not fit an
/// `i64` is treated as unbounded).
#[derive(Debug, Deserialize)]
pub struct RangeConstraint {
    #[serde(default, deserialize_with = "lenient_int")]
    pub min_val: Option<i64>,
    #[serde(default, deserialize_with = "lenient_int")]
    pub max_val: Option<i64>,
}

fn lenient_int<'de, D: Deserializer<'de>>(d: D) -> Result<Option<i64>, D::Error> {
    let v = serde_json::Value::deserialize(d)?;
    Ok(v.as_i64())
}

#[derive(Debug, Deserialize)]
pub struct GraphModule {
    pub graph: Graph,
    pub signature: GraphSignature,
}

#[derive(Debug, Deserialize)]
pub struct Graph {
    pub nodes: Vec<Node>,
    pub tensor_values: BTreeMap<String, TensorMeta>,
    #[serde(default)]
    pub sym_int_values: BTreeMap<String, SymInt>,
    #[serde(default)]
    pub sym_bool_values: BTreeMap<String, SymBool>,
    #[serde(default)]
    pub sym_float_values: BTreeMap<String, SymFloat>,
}

#[derive(Debug, Deserialize)]
pub struct Node {
    pub target: String,
    pub inputs: Vec<NamedArgument>,
    pub outputs: Vec<Argument>,
    #[serde(default)]
    pub metadata: BTreeMap<String, String>,
    #[serde(default)]
    pub name: Option<String>,
}

#[derive(Debug, Deserialize)]
pub struct NamedArgument {
    pub name: String,
    pub arg: Argument,
    /// 1 = positional, 2 = keyword; absent (or 0) in older archives.
    #[serde(default)]
    pub kind: Option<i64>,
}

#[derive(Debug, Deserialize)]
pub struct TensorArgument {
    pub name: String,
}

#[derive(Debug, Deserialize)]
pub enum SymIntArgument {
    #[serde(rename = "as_name")]
    Name(String),
    #[serde(rename = "as_int")]
    Int(i64),
}

#[derive(Debug, Deserialize)]
pub enum SymBoolArgument {
    #[serde(rename = "as_name")]
    Name(String),
    #[serde(rename = "as_bool")]
    Bool(bool),
}

#[derive(Debug, Deserialize)]
pub enum SymFloatArgument {
    #[serde(rename = "as_name")]
    Name(String),
    #[serde(rename = "as_float")]
    Float(JsonFloat),
}

#[derive(Debug, Deserialize)]
pub enum OptionalTensorArgument {
    #[serde(rename = "as_tensor")]
    Tensor(TensorArgument),
    #[serde(rename = "as_none")]
    None(IgnoredAny),
}

#[derive(Debug, Deserialize)]
pub struct Device {
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default)]
    pub index: Option<i64>,
}

/// A float as torch writes it: a number, or `"Infinity"`, `"-Infinity"`, `"NaN"`.
#[derive(Debug, Clone, Copy)]
pub struct JsonFloat(pub f64);

impl<'de> Deserialize<'de> for JsonFloat {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<JsonFloat, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Repr {
            Num(f64),
            Text(String),
        }
        match Repr::deserialize(d)? {
            Repr::Num(v) => Ok(JsonFloat(v)),
            Repr::Text(t) => match t.as_str() {
                "Infinity" | "inf" => Ok(JsonFloat(f64::INFINITY)),
                "-Infinity" | "-inf" => Ok(JsonFloat(f64::NEG_INFINITY)),
                "NaN" | "nan" => Ok(JsonFloat(f64::NAN)),
                other => Err(serde::de::Error::custom(format!("`{other}` is not a float"))),
            },
        }
    }
}

/// `Argument`, every kind of schema 8.x.
#[derive(Debug, Deserialize)]
pub enum Argument {
    #[serde(rename = "as_none")]
    None(IgnoredAny),
    #[serde(rename = "as_tensor")]
    Tensor(TensorArgument),
    #[serde(rename = "as_tensors")]
    Tensors(Vec<TensorArgument>),
    #[serde(rename = "as_int")]
    Int(i64),
    #[serde(rename = "as_ints")]
    Ints(Vec<i64>),
    #[serde(rename = "as_float")]
    Float(JsonFloat),
    #[serde(rename = "as_floats")]
    Floats(Vec<JsonFloat>),
    #[serde(rename = "as_string")]
    String(String),
    #[serde(rename = "as_strings")]
    Strings(IgnoredAny),
    #[serde(rename = "as_sym_int")]
    SymInt(SymIntArgument),
    #[serde(rename = "as_sym_ints")]
    SymInts(Vec<SymIntArgument>),
    #[serde(rename = "as_scalar_type")]
    ScalarType(i64),
    #[serde(rename = "as_memory_format")]
    MemoryFormat(i64),
    #[serde(rename = "as_layout")]
    Layout(i64),
    #[serde(rename = "as_device")]
    Device(Device),
    #[serde(rename = "as_bool")]
    Bool(bool),
    #[serde(rename = "as_bools")]
    Bools(Vec<bool>),
    #[serde(rename = "as_sym_bool")]
    SymBool(SymBoolArgument),
    #[serde(rename = "as_sym_bools")]
    SymBools(Vec<SymBoolArgument>),
    #[serde(rename = "as_graph")]
    Graph(IgnoredAny),
    #[serde(rename = "as_optional_tensors")]
    OptionalTensors(Vec<OptionalTensorArgument>),
    #[serde(rename = "as_custom_obj")]
    CustomObj(IgnoredAny),
    #[serde(rename = "as_operator")]
    Operator(IgnoredAny),
    #[serde(rename = "as_sym_float")]
    SymFloat(SymFloatArgument),
    #[serde(rename = "as_sym_floats")]
    SymFloats(Vec<SymFloatArgument>),
    #[serde(rename = "as_optional_tensor")]
    OptionalTensor(OptionalTensorArgument),
    #[serde(rename = "as_complex")]
    Complex(IgnoredAny),
    #[serde(rename = "as_nested_tensors")]
    NestedTensors(IgnoredAny),
    #[serde(rename = "as_int_lists")]
    IntLists(IgnoredAny),
    #[serde(rename = "as_string_to_argument")]
    StringMap(IgnoredAny),
}

impl Argument {
    /// The schema's name for this kind (`as_tensor`), for error messages.
    pub fn kind_name(&self) -> &'static str {
        match self {
            Argument::None(_) => "as_none",
            Argument::Tensor(_) => "as_tensor",
            Argument::Tensors(_) => "as_tensors",
            Argument::Int(_) => "as_int",
            Argument::Ints(_) => "as_ints",
            Argument::Float(_) => "as_float",
            Argument::Floats(_) => "as_floats",
            Argument::String(_) => "as_string",
            Argument::Strings(_) => "as_strings",
            Argument::SymInt(_) => "as_sym_int",
            Argument::SymInts(_) => "as_sym_ints",
            Argument::ScalarType(_) => "as_scalar_type",
            Argument::MemoryFormat(_) => "as_memory_format",
            Argument::Layout(_) => "as_layout",
            Argument::Device(_) => "as_device",
            Argument::Bool(_) => "as_bool",
            Argument::Bools(_) => "as_bools",
            Argument::SymBool(_) => "as_sym_bool",
            Argument::SymBools(_) => "as_sym_bools",
            Argument::Graph(_) => "as_graph",
            Argument::OptionalTensors(_) => "as_optional_tensors",
            Argument::CustomObj(_) => "as_custom_obj",
            Argument::Operator(_) => "as_operator",
            Argument::SymFloat(_) => "as_sym_float",
            Argument::SymFloats(_) => "as_sym_floats",
            Argument::OptionalTensor(_) => "as_optional_tensor",
            Argument::Complex(_) => "as_complex",
            Argument::NestedTensors(_) => "as_nested_tensors",
            Argument::IntLists(_) => "as_int_lists",
            Argument::StringMap(_) => "as_string_to_argument",
        }
    }

    /// True for the scalar symbolic kinds a sym-op node produces.
    pub fn is_symbolic_scalar(&self) -> bool {
        matches!(self, Argument::SymInt(_) | Argument::SymBool(_) | Argument::SymFloat(_))
    }
}

#[derive(Debug, Deserialize)]
pub struct SymExpr {
    pub expr_str: String,
}

#[derive(Debug, Deserialize)]
pub enum SymInt {
    #[serde(rename = "as_expr")]
    Expr(SymExpr),
    #[serde(rename = "as_int")]
    Int(i64),
}

#[derive(Debug, Deserialize)]
pub enum SymBool {
    #[serde(rename = "as_expr")]
    Expr(SymExpr),
    #[serde(rename = "as_bool")]
    Bool(bool),
}

#[derive(Debug, Deserialize)]
pub enum SymFloat {
    #[serde(rename = "as_expr")]
    Expr(SymExpr),
    #[serde(rename = "as_float")]
    Float(JsonFloat),
}

#[derive(Debug, Deserialize)]
pub struct TensorMeta {
    pub dtype: i64,
    pub sizes: Vec<SymInt>,
    #[serde(default)]
    pub strides: Vec<SymInt>,
    #[serde(default)]
    pub storage_offset: Option<SymInt>,
    /// `Layout` enum: 7 is strided.
    #[serde(default)]
    pub layout: Option<i64>,
}

#[derive(Debug, Deserialize)]
pub struct GraphSignature {
    pub input_specs: Vec<InputSpec>,
    pub output_specs: Vec<OutputSpec>,
}

#[derive(Debug, Deserialize)]
pub enum InputSpec {
    #[serde(rename = "user_input")]
    User { arg: Argument },
    #[serde(rename = "parameter")]
    Parameter { arg: TensorArgument, parameter_name: String },
    #[serde(rename = "buffer")]
    Buffer { arg: TensorArgument, buffer_name: String },
    #[serde(rename = "tensor_constant")]
    TensorConstant { arg: TensorArgument, tensor_constant_name: String },
    #[serde(rename = "custom_obj")]
    CustomObj(IgnoredAny),
    #[serde(rename = "token")]
    Token(IgnoredAny),
    #[serde(rename = "constant_input")]
    ConstantInput(IgnoredAny),
}

#[derive(Debug, Deserialize)]
pub enum OutputSpec {
    #[serde(rename = "user_output")]
    User { arg: Argument },
    #[serde(rename = "loss_output")]
    Loss(IgnoredAny),
    #[serde(rename = "buffer_mutation")]
    BufferMutation { arg: TensorArgument, buffer_name: String },
    #[serde(rename = "gradient_to_parameter")]
    GradientToParameter(IgnoredAny),
    #[serde(rename = "gradient_to_user_input")]
    GradientToUserInput(IgnoredAny),
    #[serde(rename = "user_input_mutation")]
    UserInputMutation { arg: TensorArgument, user_input_name: String },
    #[serde(rename = "token")]
    Token(IgnoredAny),
    #[serde(rename = "parameter_mutation")]
    ParameterMutation { arg: TensorArgument, parameter_name: String },
}

/// `PayloadConfig`: `data/weights/<model>_weights_config.json` and the constants one.
#[derive(Debug, Deserialize)]
pub struct PayloadConfig {
    pub config: BTreeMap<String, PayloadMeta>,
}

#[derive(Debug, Deserialize)]
pub struct PayloadMeta {
    pub path_name: String,
    #[serde(default)]
    pub use_pickle: bool,
    #[serde(default)]
    pub tensor_meta: Option<TensorMeta>,
}
