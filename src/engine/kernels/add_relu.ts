/** relu(a + b) in one kernel (src/engine/ops/add_relu.ts); native only (the oneDNN addon). */
export const AddRelu = 'SortedNetAddRelu';
