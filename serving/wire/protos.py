"""TF Serving's wire types, declared once: every message its gRPC APIs, config files and
warm-up records carry, with TensorFlow's and TF Serving's package names, message names and
field numbers, so the bytes are the official ones (tests compare each field with the
official descriptors and round-trip random messages both ways).

Files keep their upstream paths. Where a file is only partly needed (meta_graph.proto's
SignatureDef, session_bundle_config.proto's BatchingParameters), only those messages are
declared. SessionRunRequest/Response leave out `options` (RunOptions) and `metadata`
(RunMetadata), which would pull in most of TensorFlow's config protos: a record that
carries them keeps them as unknown fields, byte for byte.
"""

from __future__ import annotations

from fmnist.serving.wire.dtypes import TYPE_NAMES
from fmnist.serving.wire.schema import enum, message, oneof, proto_file

WRAPPERS, ANY = "google/protobuf/wrappers.proto", "google/protobuf/any.proto"
TYPES = "tensorflow/core/framework/types.proto"
SHAPE = "tensorflow/core/framework/tensor_shape.proto"
TENSOR = "tensorflow/core/framework/tensor.proto"
EXAMPLE = "tensorflow/core/example/example.proto"
META_GRAPH = "tensorflow/core/protobuf/meta_graph.proto"
APIS = "tensorflow_serving/apis/"
CONFIG = "tensorflow_serving/config/"

_DATA_TYPES = {
    **{f"DT_{name}": number for number, name in enumerate(TYPE_NAMES)},
    **{f"DT_{name}_REF": number + 100 for number, name in enumerate(TYPE_NAMES) if number},
}

TENSORFLOW = (
    proto_file(
        TYPES,
        "tensorflow",
        enum("DataType", **_DATA_TYPES),
        message("SerializedDType", "DataType datatype = 1"),
    ),
    proto_file(
        SHAPE,
        "tensorflow",
        message(
            "TensorShapeProto",
            message("Dim", "int64 size = 1", "string name = 2"),
            "repeated Dim dim = 2",
            "bool unknown_rank = 3",
        ),
    ),
    proto_file(
        "tensorflow/core/framework/resource_handle.proto",
        "tensorflow",
        message(
            "ResourceHandleProto",
            "string device = 1",
            "string container = 2",
            "string name = 3",
            "uint64 hash_code = 4",
            "string maybe_type_name = 5",
            message("DtypeAndShape", "DataType dtype = 1", "TensorShapeProto shape = 2"),
            "repeated DtypeAndShape dtypes_and_shapes = 6",
        ),
        deps=(SHAPE, TYPES),
    ),
    proto_file(
        TENSOR,
        "tensorflow",
        message(
            "TensorProto",
            "DataType dtype = 1",
            "TensorShapeProto tensor_shape = 2",
            "int32 version_number = 3",
            "bytes tensor_content = 4",
            "repeated int32 half_val = 13",
            "repeated float float_val = 5",
            "repeated double double_val = 6",
            "repeated int32 int_val = 7",
            "repeated bytes string_val = 8",
            "repeated float scomplex_val = 9",
            "repeated int64 int64_val = 10",
            "repeated bool bool_val = 11",
            "repeated double dcomplex_val = 12",
            "repeated ResourceHandleProto resource_handle_val = 14",
            "repeated VariantTensorDataProto variant_val = 15",
            "repeated uint32 uint32_val = 16",
            "repeated uint64 uint64_val = 17",
            "bytes float8_val = 18",
        ),
        message(
            "VariantTensorDataProto",
            "string type_name = 1",
            "bytes metadata = 2",
            "repeated TensorProto tensors = 3",
        ),
        deps=("tensorflow/core/framework/resource_handle.proto", SHAPE, TYPES),
    ),
    proto_file(
        "tensorflow/core/example/feature.proto",
        "tensorflow",
        message("BytesList", "repeated bytes value = 1"),
        message("FloatList", "repeated float value = 1"),
        message("Int64List", "repeated int64 value = 1"),
        message(
            "Feature",
            oneof(
                "kind",
                "BytesList bytes_list = 1",
                "FloatList float_list = 2",
                "Int64List int64_list = 3",
            ),
        ),
        message("Features", "map<string, Feature> feature = 1"),
        message("FeatureList", "repeated Feature feature = 1"),
        message("FeatureLists", "map<string, FeatureList> feature_list = 1"),
    ),
    proto_file(
        EXAMPLE,
        "tensorflow",
        message("Example", "Features features = 1"),
        message("SequenceExample", "Features context = 1", "FeatureLists feature_lists = 2"),
        deps=("tensorflow/core/example/feature.proto",),
    ),
    proto_file(
        "xla/tsl/protobuf/error_codes.proto",
        "tensorflow.error",
        enum(
            "Code",
            OK=0,
            CANCELLED=1,
            UNKNOWN=2,
            INVALID_ARGUMENT=3,
            DEADLINE_EXCEEDED=4,
            NOT_FOUND=5,
            ALREADY_EXISTS=6,
            PERMISSION_DENIED=7,
            UNAUTHENTICATED=16,
            RESOURCE_EXHAUSTED=8,
            FAILED_PRECONDITION=9,
            ABORTED=10,
            OUT_OF_RANGE=11,
            UNIMPLEMENTED=12,
            INTERNAL=13,
            UNAVAILABLE=14,
            DATA_LOSS=15,
            DO_NOT_USE_RESERVED_FOR_FUTURE_EXPANSION_USE_DEFAULT_IN_SWITCH_INSTEAD_=20,
        ),
    ),
    proto_file(
        "tensorflow/core/protobuf/struct.proto",
        "tensorflow",
        message(
            "StructuredValue",
            oneof(
                "kind",
                "NoneValue none_value = 1",
                "double float64_value = 11",
                "sint64 int64_value = 12",
                "string string_value = 13",
                "bool bool_value = 14",
                "TensorShapeProto tensor_shape_value = 31",
                "DataType tensor_dtype_value = 32",
                "TensorSpecProto tensor_spec_value = 33",
                "TypeSpecProto type_spec_value = 34",
                "BoundedTensorSpecProto bounded_tensor_spec_value = 35",
                "ListValue list_value = 51",
                "TupleValue tuple_value = 52",
                "DictValue dict_value = 53",
                "NamedTupleValue named_tuple_value = 54",
                "TensorProto tensor_value = 55",
                "TensorProto numpy_value = 56",
            ),
        ),
        message("NoneValue"),
        message("ListValue", "repeated StructuredValue values = 1"),
        message("TupleValue", "repeated StructuredValue values = 1"),
        message("DictValue", "map<string, StructuredValue> fields = 1"),
        message("PairValue", "string key = 1", "StructuredValue value = 2"),
        message("NamedTupleValue", "string name = 1", "repeated PairValue values = 2"),
        message(
            "TensorSpecProto",
            "string name = 1",
            "TensorShapeProto shape = 2",
            "DataType dtype = 3",
        ),
        message(
            "BoundedTensorSpecProto",
            "string name = 1",
            "TensorShapeProto shape = 2",
            "DataType dtype = 3",
            "TensorProto minimum = 4",
            "TensorProto maximum = 5",
        ),
        message(
            "TypeSpecProto",
            enum(
                "TypeSpecClass",
                UNKNOWN=0,
                SPARSE_TENSOR_SPEC=1,
                INDEXED_SLICES_SPEC=2,
                RAGGED_TENSOR_SPEC=3,
                TENSOR_ARRAY_SPEC=4,
                DATA_DATASET_SPEC=5,
                DATA_ITERATOR_SPEC=6,
                OPTIONAL_SPEC=7,
                PER_REPLICA_SPEC=8,
                VARIABLE_SPEC=9,
                ROW_PARTITION_SPEC=10,
                REGISTERED_TYPE_SPEC=12,
                EXTENSION_TYPE_SPEC=13,
            ),
            "TypeSpecClass type_spec_class = 1",
            "StructuredValue type_state = 2",
            "string type_spec_class_name = 3",
            "int32 num_flat_components = 4",
        ),
        deps=(TENSOR, SHAPE, TYPES),
    ),
    proto_file(  # only the SignatureDef part of meta_graph.proto
        META_GRAPH,
        "tensorflow",
        message(
            "TensorInfo",
            message(
                "CooSparse",
                "string values_tensor_name = 1",
                "string indices_tensor_name = 2",
                "string dense_shape_tensor_name = 3",
            ),
            message(
                "CompositeTensor",
                "TypeSpecProto type_spec = 1",
                "repeated TensorInfo components = 2",
            ),
            oneof(
                "encoding",
                "string name = 1",
                "CooSparse coo_sparse = 4",
                "CompositeTensor composite_tensor = 5",
            ),
            "DataType dtype = 2",
            "TensorShapeProto tensor_shape = 3",
        ),
        message(
            "SignatureDef",
            "map<string, TensorInfo> inputs = 1",
            "map<string, TensorInfo> outputs = 2",
            "string method_name = 3",
            "map<string, TensorProto> defaults = 4",
        ),
        deps=(TENSOR, SHAPE, TYPES, "tensorflow/core/protobuf/struct.proto"),
    ),
    proto_file(
        "tensorflow/core/protobuf/named_tensor.proto",
        "tensorflow",
        message("NamedTensorProto", "string name = 1", "TensorProto tensor = 2"),
        deps=(TENSOR,),
    ),
)

SERVING_CONFIG = (
    proto_file(
        CONFIG + "log_collector_config.proto",
        "tensorflow.serving",
        message("LogCollectorConfig", "string type = 1", "string filename_prefix = 2"),
    ),
    proto_file(
        CONFIG + "logging_config.proto",
        "tensorflow.serving",
        message(
            "PerTaskSamplingConfig",
            "string dc = 1",
            "optional int32 task_index = 2",
            "double sampling_rate = 3",
        ),
        message(
            "SamplingConfig",
            enum("Attributes", ATTR_DEFAULT=0, ATTR_REQUEST_ORIGIN=1, ATTR_REQUEST_CRITICALITY=2),
            "double sampling_rate = 1",
            "repeated PerTaskSamplingConfig per_task_sampling_configs = 3",
            "int32 attributes = 2",
        ),
        message(
            "LoggingConfig",
            "LogCollectorConfig log_collector_config = 1",
            "SamplingConfig sampling_config = 2",
            "google.protobuf.Any custom_logging_config = 3",
        ),
        deps=(ANY, CONFIG + "log_collector_config.proto"),
    ),
    proto_file(
        CONFIG + "file_system_storage_path_source.proto",
        "tensorflow.serving",
        message(
            "FileSystemStoragePathSourceConfig",
            message(
                "ServableVersionPolicy",
                message("Latest", "uint32 num_versions = 1"),
                message("All"),
                message("Specific", "repeated int64 versions = 1"),
                oneof(
                    "policy_choice",
                    "Latest latest = 100",
                    "All all = 101",
                    "Specific specific = 102",
                ),
            ),
            message(
                "ServableToMonitor",
                "string servable_name = 1",
                "string base_path = 2",
                "ServableVersionPolicy servable_version_policy = 4",
            ),
            "repeated ServableToMonitor servables = 5",
            "int64 file_system_poll_wait_seconds = 3",
            "bool fail_if_zero_versions_at_startup = 4",
            "bool servable_versions_always_present = 6",
        ),
    ),
    proto_file(
        CONFIG + "model_server_config.proto",
        "tensorflow.serving",
        enum("ModelType", MODEL_TYPE_UNSPECIFIED=0, TENSORFLOW=1, OTHER=2),
        message(
            "ModelConfig",
            "string name = 1",
            "string base_path = 2",
            "ModelType model_type = 3",
            "string model_platform = 4",
            "FileSystemStoragePathSourceConfig.ServableVersionPolicy model_version_policy = 7",
            "map<string, int64> version_labels = 8",
            "LoggingConfig logging_config = 6",
        ),
        message("ModelConfigList", "repeated ModelConfig config = 1"),
        message(
            "ModelServerConfig",
            oneof(
                "config",
                "ModelConfigList model_config_list = 1",
                "google.protobuf.Any custom_model_config = 2",
            ),
        ),
        deps=(
            ANY,
            CONFIG + "file_system_storage_path_source.proto",
            CONFIG + "logging_config.proto",
        ),
    ),
    proto_file(  # only BatchingParameters, the --batching_parameters_file message
        "tensorflow_serving/servables/tensorflow/session_bundle_config.proto",
        "tensorflow.serving",
        message(
            "BatchingParameters",
            "google.protobuf.Int64Value max_batch_size = 1",
            "google.protobuf.Int64Value batch_timeout_micros = 2",
            "google.protobuf.Int64Value max_enqueued_batches = 3",
            "google.protobuf.Int64Value num_batch_threads = 4",
            "google.protobuf.StringValue thread_pool_name = 5",
            "repeated int64 allowed_batch_sizes = 6",
            "bool pad_variable_length_inputs = 7",
            "google.protobuf.BoolValue enable_large_batch_splitting = 8",
            "google.protobuf.Int64Value max_execution_batch_size = 9",
        ),
        deps=(WRAPPERS,),
    ),
    proto_file(
        CONFIG + "monitoring_config.proto",
        "tensorflow.serving",
        message("PrometheusConfig", "bool enable = 1", "string path = 2"),
        message("MonitoringConfig", "PrometheusConfig prometheus_config = 1"),
    ),
)

SERVING_APIS = (
    proto_file(
        APIS + "model.proto",
        "tensorflow.serving",
        message(
            "ModelSpec",
            "string name = 1",
            oneof(
                "version_choice",
                "google.protobuf.Int64Value version = 2",
                "string version_label = 4",
            ),
            "string signature_name = 3",
        ),
        deps=(WRAPPERS,),
    ),
    proto_file(
        APIS + "status.proto",
        "tensorflow.serving",
        message(
            "StatusProto",
            'tensorflow.error.Code error_code = 1 [json_name = "error_code"]',
            'string error_message = 2 [json_name = "error_message"]',
        ),
        deps=("xla/tsl/protobuf/error_codes.proto",),
    ),
    proto_file(
        APIS + "predict.proto",
        "tensorflow.serving",
        message(
            "PredictRequest",
            "ModelSpec model_spec = 1",
            "map<string, tensorflow.TensorProto> inputs = 2",
            "repeated string output_filter = 3",
            "PredictStreamedOptions predict_streamed_options = 5",
            "optional bytes client_id = 6",
            message(
                "RequestOptions",
                enum("DeterministicMode", DETERMINISTIC_MODE_UNSPECIFIED=0, FIXED_DECODER_SLOT=1),
                message("Handshake", "int64 estimated_payload_bytes = 1"),
                "optional bytes client_id = 1",
                "optional DeterministicMode deterministic_mode = 2",
                "optional bool return_additional_arrays_from_prefill = 3",
                "repeated int64 return_stoptokens = 4",
                "optional bool return_all_stoptokens = 9",
                "optional int64 max_cache_length = 6",
                "optional Handshake handshake = 13",
            ),
            "optional RequestOptions request_options = 7",
        ),
        message(
            "PredictStreamedOptions",
            enum("RequestState", NONE=0, SPLIT=1, END_SPLIT=2, CANCEL=3),
            "RequestState request_state = 1",
            "map<string, int32> split_dimensions = 2",
            "bool return_single_response = 3",
        ),
        message(
            "PredictResponse",
            "ModelSpec model_spec = 2",
            "map<string, tensorflow.TensorProto> outputs = 1",
        ),
        deps=(TENSOR, APIS + "model.proto"),
    ),
    proto_file(
        APIS + "input.proto",
        "tensorflow.serving",
        message("ExampleList", "repeated tensorflow.Example examples = 1"),
        message(
            "ExampleListWithContext",
            "repeated tensorflow.Example examples = 1",
            "tensorflow.Example context = 2",
        ),
        message(
            "Input",
            oneof(
                "kind",
                "ExampleList example_list = 1",
                "ExampleListWithContext example_list_with_context = 2",
            ),
        ),
        deps=(EXAMPLE,),
    ),
    proto_file(
        APIS + "classification.proto",
        "tensorflow.serving",
        message("Class", "string label = 1", "float score = 2"),
        message("Classifications", "repeated Class classes = 1"),
        message("ClassificationResult", "repeated Classifications classifications = 1"),
        message("ClassificationRequest", "ModelSpec model_spec = 1", "Input input = 2"),
        message(
            "ClassificationResponse",
            "ModelSpec model_spec = 2",
            "ClassificationResult result = 1",
        ),
        deps=(APIS + "input.proto", APIS + "model.proto"),
    ),
    proto_file(
        APIS + "regression.proto",
        "tensorflow.serving",
        message("Regression", "float value = 1"),
        message("RegressionResult", "repeated Regression regressions = 1"),
        message("RegressionRequest", "ModelSpec model_spec = 1", "Input input = 2"),
        message("RegressionResponse", "ModelSpec model_spec = 2", "RegressionResult result = 1"),
        deps=(APIS + "input.proto", APIS + "model.proto"),
    ),
    proto_file(
        APIS + "inference.proto",
        "tensorflow.serving",
        message("InferenceTask", "ModelSpec model_spec = 1", "string method_name = 2"),
        message(
            "InferenceResult",
            "ModelSpec model_spec = 1",
            oneof(
                "result",
                "ClassificationResult classification_result = 2",
                "RegressionResult regression_result = 3",
            ),
        ),
        message(
            "MultiInferenceRequest",
            "repeated InferenceTask tasks = 1",
            "Input input = 2",
        ),
        message("MultiInferenceResponse", "repeated InferenceResult results = 1"),
        deps=tuple(
            APIS + name
            for name in ("classification.proto", "input.proto", "model.proto", "regression.proto")
        ),
    ),
    proto_file(
        APIS + "get_model_metadata.proto",
        "tensorflow.serving",
        message("SignatureDefMap", "map<string, tensorflow.SignatureDef> signature_def = 1"),
        message(
            "GetModelMetadataRequest",
            "ModelSpec model_spec = 1",
            "repeated string metadata_field = 2",
        ),
        message(
            "GetModelMetadataResponse",
            "ModelSpec model_spec = 1",
            "map<string, google.protobuf.Any> metadata = 2",
        ),
        deps=(ANY, META_GRAPH, APIS + "model.proto"),
    ),
    proto_file(
        APIS + "get_model_status.proto",
        "tensorflow.serving",
        message("GetModelStatusRequest", "ModelSpec model_spec = 1"),
        message(
            "ModelVersionStatus",
            enum("State", UNKNOWN=0, START=10, LOADING=20, AVAILABLE=30, UNLOADING=40, END=50),
            "int64 version = 1",
            "State state = 2",
            "StatusProto status = 3",
        ),
        message(
            "GetModelStatusResponse",
            "repeated ModelVersionStatus model_version_status = 1"
            ' [json_name = "model_version_status"]',
        ),
        deps=(APIS + "model.proto", APIS + "status.proto"),
    ),
    proto_file(
        APIS + "model_management.proto",
        "tensorflow.serving",
        message(
            "ReloadConfigRequest",
            "ModelServerConfig config = 1",
            "repeated string metric_names = 2",
        ),
        message(
            "ReloadConfigResponse",
            "StatusProto status = 1",
            "repeated Metric metric = 2",
        ),
        message(
            "Metric", "string name = 1", oneof("value_increase", "int64 int64_value_increase = 2")
        ),
        deps=(APIS + "status.proto", CONFIG + "model_server_config.proto"),
    ),
    proto_file(
        APIS + "logging.proto",
        "tensorflow.serving",
        message(
            "LogMetadata",
            "ModelSpec model_spec = 1",
            "SamplingConfig sampling_config = 2",
            "repeated string saved_model_tags = 3",
            "int64 timestamp_secs = 4",
            "string dc = 5",
            "string request_origin = 6",
            "string request_criticality = 7",
            "int64 safe_aggregation_privacy_key = 8",
        ),
        deps=(APIS + "model.proto", CONFIG + "logging_config.proto"),
    ),
    proto_file(  # without RunOptions and RunMetadata (see the module docstring)
        APIS + "session_service.proto",
        "tensorflow.serving",
        message(
            "SessionRunRequest",
            "ModelSpec model_spec = 1",
            "repeated tensorflow.NamedTensorProto feed = 2",
            "repeated string fetch = 3",
            "repeated string target = 4",
            "bool tensor_name_is_alias = 6",
        ),
        message(
            "SessionRunResponse",
            "ModelSpec model_spec = 3",
            "repeated tensorflow.NamedTensorProto tensor = 1",
        ),
        deps=("tensorflow/core/protobuf/named_tensor.proto", APIS + "model.proto"),
    ),
    proto_file(
        APIS + "prediction_log.proto",
        "tensorflow.serving",
        message(
            "ClassifyLog",
            "ClassificationRequest request = 1",
            "ClassificationResponse response = 2",
        ),
        message("RegressLog", "RegressionRequest request = 1", "RegressionResponse response = 2"),
        message("PredictLog", "PredictRequest request = 1", "PredictResponse response = 2"),
        message(
            "PredictStreamedLog",
            "repeated PredictRequest request = 1",
            "repeated PredictResponse response = 2",
        ),
        message(
            "MultiInferenceLog",
            "MultiInferenceRequest request = 1",
            "MultiInferenceResponse response = 2",
        ),
        message(
            "SessionRunLog", "SessionRunRequest request = 1", "SessionRunResponse response = 2"
        ),
        message(
            "PredictionLog",
            "LogMetadata log_metadata = 1",
            oneof(
                "log_type",
                "ClassifyLog classify_log = 2",
                "RegressLog regress_log = 3",
                "PredictLog predict_log = 6",
                "PredictStreamedLog predict_streamed_log = 7",
                "MultiInferenceLog multi_inference_log = 4",
                "SessionRunLog session_run_log = 5",
            ),
        ),
        deps=tuple(
            APIS + name
            for name in (
                "classification.proto",
                "inference.proto",
                "logging.proto",
                "predict.proto",
                "regression.proto",
                "session_service.proto",
            )
        ),
    ),
)

PROFILER = "tsl/profiler/protobuf/"
# TensorFlow's profiler service, which TF Serving also answers on its gRPC port (only the
# messages of Profile and Terminate: Monitor is not served).
TF_PROFILER = (
    proto_file(
        PROFILER + "profiler_options.proto",
        "tensorflow",
        message(
            "ProfileOptions",
            enum("DeviceType", UNSPECIFIED=0, CPU=1, GPU=2, TPU=3, PLUGGABLE_DEVICE=4),
            message("TraceOptions", "uint64 host_traceme_filter_mask = 1"),
            message(
                "AdvancedConfigValue",
                oneof(
                    "value",
                    "string string_value = 1",
                    "bool bool_value = 2",
                    "int64 int64_value = 3",
                ),
            ),
            "uint32 version = 5",
            "DeviceType device_type = 6",
            "bool include_dataset_ops = 1",
            "uint32 host_tracer_level = 2",
            "uint32 device_tracer_level = 3",
            "uint32 python_tracer_level = 4",
            "bool enable_hlo_proto = 7",
            "uint64 start_timestamp_ns = 8",
            "uint64 duration_ms = 9",
            "string repository_path = 10",
            "TraceOptions trace_options = 11",
            "map<string, AdvancedConfigValue> advanced_configuration = 12",
            "bool raise_error_on_start_failure = 13",
            "string session_id = 14",
            "string override_hostname = 15",
        ),
    ),
    proto_file(
        PROFILER + "profiler_service.proto",
        "tensorflow",
        message("ToolRequestOptions", "string output_formats = 2", "bool save_to_repo = 3"),
        message(
            "ProfileRequest",
            "uint64 duration_ms = 1",
            "uint64 max_events = 2",
            "repeated string tools = 3",
            "map<string, ToolRequestOptions> tool_options = 8",
            "ProfileOptions opts = 4",
            "string repository_root = 5",
            "string session_id = 6",
            "string host_name = 7",
        ),
        message("ProfileToolData", "string name = 1", "bytes data = 2"),
        message(
            "ProfileResponse", "repeated ProfileToolData tool_data = 6", "bool empty_trace = 7"
        ),
        message("TerminateRequest", "string session_id = 1"),
        message("TerminateResponse"),
        deps=(PROFILER + "profiler_options.proto",),
    ),
)

GRPC_HEALTH = proto_file(
    "grpc_health/v1/health.proto",
    "grpc.health.v1",
    message("HealthCheckRequest", "string service = 1"),
    message(
        "HealthCheckResponse",
        enum("ServingStatus", UNKNOWN=0, SERVING=1, NOT_SERVING=2, SERVICE_UNKNOWN=3),
        "ServingStatus status = 1",
    ),
)

FILES = (*TENSORFLOW, *SERVING_CONFIG, *SERVING_APIS, *TF_PROFILER, GRPC_HEALTH)
