using System.Runtime.CompilerServices;

// ILGPU's CPU accelerator emits kernel tasks into a dynamic assembly named ILGPURuntime that must see our internal argument structs.
[assembly: InternalsVisibleTo("ILGPURuntime")]
[assembly: InternalsVisibleTo("Infer.Kernels.Gpu.Tests")]
