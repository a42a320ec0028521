import ArgumentParser
import CLIP
import CLIPCommandSupport
import CLIPFiles
import CLIPWeights
import Foundation

struct Convert: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Write any checkpoint swift-clip loads as .safetensors with OpenAI key names (fp32 or fp16).",
        discussion: """
            The output loads in the reference `clip` package (`build_model`), in open_clip and in swift-clip. The \
            architecture is checked by building the model first, so a file that would not load is never written.
            """)

    @Argument(help: "A checkpoint file (.pt, .pth, .bin, .safetensors) or Hugging Face CLIPModel folder.")
    var input: String
    @Option(help: "The .safetensors file to write.") var output: String
    @Option(help: "Stored type: f32 or f16.") var dtype = "f32"

    func validate() throws {
        guard ["f32", "f16"].contains(dtype) else { throw ValidationError("--dtype must be f32 or f16") }
        guard output.hasSuffix(".safetensors") else { throw ValidationError("--output must end in .safetensors") }
    }

    func run() throws {
        let (parameters, configuration, _) = try CLIPModel.loadParameters(path: input)
        // OpenAI's format carries no config: a reader rebuilds QuickGELU, ε 1e-5 and CLIP's pooling from the
        // names alone, so anything else would load as a different function.
        var differences: [String] = []
        if configuration.objective == .sigmoid { differences.append("it is a SigLIP model (sigmoid logits with logit_bias)") }
        if parameters.names.contains(where: { $0.hasSuffix(".ls_1.gamma") }) {
            differences.append("its blocks have layer scale (ls_1.gamma, ls_2.gamma)")
        }
        if configuration.text.roberta != nil {
            differences.append("its text tower is a Hugging Face RoBERTa")
        }
        if configuration.text.nllb != nil {
            differences.append("its text tower is NLLB-200's encoder")
        }
        if configuration.text.pooling == .appendedClassToken {
            differences.append("it is a CoCa model (attentional pooler, appended class token)")
        }
        var activations = [configuration.text.activation], epsilons = [configuration.text.layerNormEps]
        if case .transformer(let v) = configuration.vision {
            activations.append(v.activation)
            epsilons.append(v.layerNormEps)
        }
        if activations.contains(where: { $0 != .quickGELU }) {
            differences.append("its MLPs use \(activations.map(\.rawValue).joined(separator: "/")) where OpenAI's format implies quick_gelu")
        }
        if epsilons.contains(where: { $0 != 1e-5 }) {
            differences.append("its LayerNorm ε is \(epsilons.map { "\($0)" }.joined(separator: "/")) where OpenAI's format implies 1e-05")
        }
        guard differences.isEmpty else {
            throw CLIError.input(subject: input, reason: "cannot convert it to OpenAI's format: \(differences.joined(separator: "; ")); use it as it is")
        }
        let bytes = SafeTensorsWriter.encode(parameters.ordered, metadata: ["format": "pt", "producer": "swift-clip convert"],
                                             half: dtype == "f16")
        try OutputFile.write(bytes, to: output)
    }
}
