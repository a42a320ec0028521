"""`--avx2-proxy` for the benchmark scripts: an AVX2-only machine approximated on an AVX-512 one, every side capped
where its library allows, and labelled as a proxy in the output.

    clip          CLIP_CPU=avx2 (swift-clip's AVX2 kernels; int8 without VNNI)
    OpenVINO      ONEDNN_MAX_CPU_ISA=AVX2 (its oneDNN primitives and JIT kernels; its LayerNorm (MVN) kernel keeps
                  AVX-512, which the runtime model's primitive types show)
    PyTorch       ATEN_CPU_CAPABILITY=avx2, ONEDNN_MAX_CPU_ISA=AVX2, MKL_ENABLE_INSTRUCTIONS=AVX2
    ONNX Runtime  not capped: MLAS picks its kernels from CPUID and has no switch, so it keeps AVX-512 (this makes
                  the proxy harder on swift-clip than an AVX2 machine would be)

The variables are read when the libraries load, so the script runs itself again with them set before it imports
torch. A Zen 4 running AVX2 code has Zen 3's two 256-bit FMA pipes, but its larger L2 and its own memory system:
a proxy, never a figure from an AVX2 machine. The parsers that take the flag must not accept abbreviations
(`allow_abbrev=False`): `apply` looks for the whole flag.
"""
import os
import sys

CAPS = {"CLIP_CPU": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2", "ATEN_CPU_CAPABILITY": "avx2",
        "MKL_ENABLE_INSTRUCTIONS": "AVX2"}
MARK = "CLIP_BENCH_AVX2_PROXY"


def apply():
    """Call before importing torch, openvino or onnxruntime: with --avx2-proxy in argv, run this script again with
    the caps set (once); otherwise do nothing."""
    if "--avx2-proxy" not in sys.argv or os.environ.get(MARK) == "1":
        return
    env = dict(os.environ, **CAPS, **{MARK: "1"})
    argv = getattr(sys, "orig_argv", None) or [sys.executable] + sys.argv  # keeps interpreter options such as -u
    os.execve(sys.executable, argv, env)


def print_label(openvino=True, onnxruntime=True):
    """Prints `label` under the script's CPU line, when there is one."""
    text = label(openvino, onnxruntime)
    if text:
        print(text)


def label(openvino=True, onnxruntime=True):
    """The line naming the caps in effect for the peers the script runs; None without the proxy. A marker inherited
    without the caps is not a proxy run and says so."""
    if os.environ.get(MARK) != "1":
        return None
    missing = [k for k, v in CAPS.items() if os.environ.get(k) != v]
    if missing:
        return f"not an AVX2 proxy: {MARK}=1 is set but {', '.join(missing)} are not"
    parts = ["AVX2 proxy on this CPU (not an AVX2 machine): clip CLIP_CPU=avx2"]
    parts.append("PyTorch capped to AVX2 (ATEN_CPU_CAPABILITY, ONEDNN_MAX_CPU_ISA, MKL_ENABLE_INSTRUCTIONS)")
    if openvino:
        parts.append("OpenVINO capped by ONEDNN_MAX_CPU_ISA=AVX2 except its MVN (LayerNorm) kernels")
    if onnxruntime:
        parts.append("ONNX Runtime uncapped (AVX-512: MLAS has no switch)")
    return "; ".join(parts)
