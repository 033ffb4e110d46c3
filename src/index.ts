/**
 * sortednet's public API, the same in Node and the browser: build sorted models, name and cost
 * their sub-models, evaluate and pick them, and deploy a trained checkpoint (`loadModel`).
 * File-system and native pieces (training runs, datasets, checkpoints on disk) are in the Node
 * entry, which `import … from 'sortednet'` selects in Node by itself.
 */
export {
  initEngine,
  currentBackend,
  parseBackend,
  BACKENDS,
  type BackendName,
  type EngineOptions,
} from './engine/backend.js';

// Models and their sub-models.
export {
  buildModel,
  specOf,
  Mlp,
  ResNet,
  MobileNetV2,
  Transformer,
  FAMILIES,
  ModelSpecSchema,
  type ModelSpec,
  type Family,
  type SortedModel,
  type MlpConfig,
  type ResNetConfig,
  type MobileNetV2Config,
  type TransformerConfig,
} from './models/index.js';
export { resnetConfig } from './models/resnet.js';
export { mobilenetV2Config } from './models/mobilenetv2.js';

// PAD-Net: partially dynamic models, Iterative Mode Partition, compaction for deployment.
export { PadResNet, padResNetConfig, type PadResNetConfig, type ConvMode } from './models/pad_resnet.js';
export {
  MoETransformer,
  moeTransformerConfig,
  MOE_TRANSFORMER_DEFAULTS,
  type MoETransformerConfig,
  type FfnMode,
} from './models/moe_transformer.js';
export { compactModel } from './models/index.js';
export {
  partition,
  checkKappa,
  type PartitionOptions,
  type PartitionResult,
  type LabelledBatch,
} from './dynamic/imp.js';
export { padLayers, type LambdaMode } from './dynamic/partial.js';
export type { TemperatureSchedule } from './train/temperature.js';
export { PRESETS, getPreset, type Preset } from './run/presets.js';
export {
  FULL,
  DIMENSIONS,
  parseSubModel,
  subModelId,
  type SubModel,
  type Dimension,
} from './sorted/submodel.js';
export { Grid, type GridSpec, type GridEntry } from './sorted/grid.js';
export type { Cost } from './sorted/cost.js';
export { SubModelSampler, type SamplerOptions } from './sorted/sample.js';
export { extractSubModel } from './models/extract.js';
export type { ForwardContext, Mode, StateKind, LoadStateOptions, LoadStateResult } from './nn/module.js';

// Evaluation and search-free selection.
export { calibrateBatchNorm } from './nn/calibrate.js';
export {
  evaluateGrid,
  accuracy,
  latencyMs,
  labelledBatches,
  type EvalRow,
  type EvalOptions,
} from './train/evaluate.js';
export {
  resolveTrainConfig,
  defaultTrainConfig,
  STRATEGIES,
  TrainConfigSchema,
  TrainConfigInputSchema,
  type TrainConfig,
  type TrainConfigInput,
  type Strategy,
} from './train/config.js';
export { pickSubModel, candidatesFrom, type Budget, type Candidate } from './infer/pick.js';
export {
  generate,
  generateStream,
  type GenerateOptions,
  type GenerateResult,
  type EarlyExitOptions,
  type SpeculativeOptions,
} from './infer/generate.js';
export { calibrateEarlyExit, type CalibrateOptions, type Calibration } from './infer/calibrate.js';
export { BpeTokenizer, StreamDecoder, END_OF_TEXT } from './tokenizer/bpe.js';
export { trainBpe } from './tokenizer/train_bpe.js';

// Data as plain arrays (loaders that read files are in the Node entry).
export type { ImageDataset, TrainTest, ChannelStats } from './data/dataset.js';

// Checkpoints without a file system, and deployment.
export {
  CHECKPOINT_FORMAT,
  encodeCheckpoint,
  decodeCheckpoint,
  parseCheckpointMeta,
  type CheckpointMeta,
  type Preprocess,
  type SaveInput,
  type BlobReader,
} from './io/checkpoint_codec.js';
export { loadModel, type ModelSource, type LoadModelOptions } from './deploy/load.js';
export { DeployedModel, type SubModelInfo, type PredictOptions, type Prediction } from './deploy/model.js';
// What a deployed model keeps per sub-model: its convolutions with BatchNorm folded in (`model.folds`).
export { FoldCache, DEFAULT_FOLD_BYTES } from './nn/fold_cache.js';
export type { RawImage, RawInput, InputShape } from './deploy/preprocess.js';
export { readTar } from './deploy/tar.js';
// Pre-trained torchvision classifiers as sorted models.
export {
  torchvisionSpec,
  TORCHVISION_ARCHS,
  type TorchvisionArch,
  type TorchvisionShape,
} from './models/torchvision.js';
export {
  torchvisionFromSafetensors,
  type TorchvisionImport,
  type TorchvisionImportOptions,
} from './io/torchvision.js';
