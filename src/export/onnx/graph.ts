/**
 * An ONNX graph under construction, encoded with the protobuf classes of `onnx-proto` (the
 * official onnx.proto compiled by protobufjs). Names are made unique here, so the family
 * builders read like the forward pass they mirror.
 */
import onnxProto from 'onnx-proto';

const { onnx } = onnxProto;
type Proto = typeof onnxProto.onnx;

/** The opset every export targets: LayerNormalization (17) is native, ReduceMean still takes `axes` as an attribute. */
export const OPSET = 17;
/** ONNX IR version 8 (ONNX 1.10+); onnxruntime reads it with opset 17. */
export const IR_VERSION = 8;

export type AttributeValue = number | number[] | string;
/** Attributes that are floats even when their value is a whole number. */
const FLOAT_ATTRIBUTES = new Set(['epsilon', 'alpha', 'beta', 'min', 'max']);

export type ElemType = 'float32' | 'int64';
const ELEM: Record<ElemType, number> = { float32: 1, int64: 7 };

export class OnnxGraph {
  private readonly nodes: InstanceType<Proto['NodeProto']>[] = [];
  private readonly initializers: InstanceType<Proto['TensorProto']>[] = [];
  private readonly inputs: InstanceType<Proto['ValueInfoProto']>[] = [];
  private readonly outputs: InstanceType<Proto['ValueInfoProto']>[] = [];
  private readonly used = new Set<string>();

  constructor(readonly name: string) {}

  /** `hint`, or `hint_2`, `hint_3`… : a name not used yet. */
  private unique(hint: string): string {
    let name = hint;
    for (let i = 2; this.used.has(name); i++) name = `${hint}_${i}`;
    this.used.add(name);
    return name;
  }

  /** A float32 weight. */
  weight(hint: string, data: Float32Array, dims: readonly number[]): string {
    const size = dims.reduce((a, b) => a * b, 1);
    if (size !== data.length) throw new Error(`onnx: '${hint}' has ${data.length} values for dims [${dims}]`);
    const name = this.unique(hint);
    const copy = new Float32Array(data); // raw_data is little-endian float32, as JS typed arrays are here
    this.initializers.push(
      onnx.TensorProto.create({
        name,
        dims: [...dims],
        dataType: ELEM.float32,
        rawData: new Uint8Array(copy.buffer),
      }),
    );
    return name;
  }

  /** A float32 scalar constant. */
  scalar(hint: string, v: number): string {
    return this.weight(hint, Float32Array.of(v), []);
  }

  /** An int64 vector constant (shapes, axes, slice bounds). */
  ints(hint: string, values: readonly number[]): string {
    const name = this.unique(hint);
    this.initializers.push(
      onnx.TensorProto.create({ name, dims: [values.length], dataType: ELEM.int64, int64Data: [...values] }),
    );
    return name;
  }

  /** An int64 scalar constant. */
  int(hint: string, v: number): string {
    const name = this.unique(hint);
    this.initializers.push(onnx.TensorProto.create({ name, dims: [], dataType: ELEM.int64, int64Data: [v] }));
    return name;
  }

  /** One node with one output; returns the output's name. */
  op(
    opType: string,
    inputs: readonly string[],
    attrs: Record<string, AttributeValue> = {},
    hint = opType,
  ): string {
    const out = this.unique(hint);
    const attribute = Object.entries(attrs).map(([name, v]) => {
      if (typeof v === 'string')
        return onnx.AttributeProto.create({ name, type: 3, s: new TextEncoder().encode(v) });
      if (Array.isArray(v)) return onnx.AttributeProto.create({ name, type: 7, ints: v });
      if (Number.isInteger(v) && !FLOAT_ATTRIBUTES.has(name))
        return onnx.AttributeProto.create({ name, type: 2, i: v });
      return onnx.AttributeProto.create({ name, type: 1, f: v });
    });
    this.nodes.push(
      onnx.NodeProto.create({
        opType,
        input: [...inputs],
        output: [out],
        name: this.unique(`${out}_node`),
        attribute,
      }),
    );
    return out;
  }

  private valueInfo(name: string, elem: ElemType, dims: readonly (number | string)[]) {
    return onnx.ValueInfoProto.create({
      name,
      type: {
        tensorType: {
          elemType: ELEM[elem],
          shape: { dim: dims.map((d) => (typeof d === 'number' ? { dimValue: d } : { dimParam: d })) },
        },
      },
    });
  }

  /** A graph input; string dims are symbolic (dynamic) axes. */
  input(name: string, elem: ElemType, dims: readonly (number | string)[]): string {
    this.used.add(name);
    this.inputs.push(this.valueInfo(name, elem, dims));
    return name;
  }

  /** Names `value` as a graph output (through an Identity, so the output has the chosen name). */
  output(name: string, value: string, elem: ElemType, dims: readonly (number | string)[]): void {
    this.used.add(name);
    this.nodes.push(
      onnx.NodeProto.create({ opType: 'Identity', input: [value], output: [name], name: `${name}_node` }),
    );
    this.outputs.push(this.valueInfo(name, elem, dims));
  }

  /** The serialized ModelProto. */
  encode(meta: { doc: string; metadata: Record<string, string> }): Uint8Array {
    const model = onnx.ModelProto.create({
      irVersion: IR_VERSION,
      opsetImport: [{ domain: '', version: OPSET }],
      producerName: 'sortednet',
      docString: meta.doc,
      graph: {
        name: this.name,
        node: this.nodes,
        initializer: this.initializers,
        input: this.inputs,
        output: this.outputs,
      },
      metadataProps: Object.entries(meta.metadata).map(([key, value]) => ({ key, value })),
    });
    return onnx.ModelProto.encode(model).finish();
  }
}
