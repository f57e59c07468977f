"""wavegpt: a GPT-2 that speaks the wavelet language (HF transformers conventions), and the
baseline tokenizations it is compared with (band-code VQ-VAE, pixels)."""
from .batching import batch_streams
from .configuration_bandvq import BandVQConfig
from .configuration_wavegpt import WaveGPTConfig
from .kv_cache import StaticKVDecoder
from .modeling_bandvq import BandVQModel
from .modeling_wavegpt import WaveGPTForCausalLM
from .sample import cut_prefix, sample
from .tokenizers import BandVQTokenizer, PixelTokenizer, load_tokenizer
from .train import TrainConfig, train

__all__ = ["WaveGPTConfig", "WaveGPTForCausalLM", "StaticKVDecoder", "TrainConfig", "train",
           "sample", "cut_prefix", "batch_streams", "BandVQConfig", "BandVQModel",
           "BandVQTokenizer", "PixelTokenizer", "load_tokenizer"]
