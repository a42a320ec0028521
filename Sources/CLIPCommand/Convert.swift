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
        try reportingErrors {
            let (parameters, _, _) = try CLIPModel.loadParameters(path: input)
            let bytes = SafeTensorsWriter.encode(parameters.ordered, metadata: ["format": "pt", "producer": "swift-clip convert"],
                                                 half: dtype == "f16")
            try OutputFile.write(bytes, to: output)
        }
    }
}
