"""edgesplit: adaptive split inference of LLMs across edge, MEC and cloud nodes."""

__version__ = "0.1.0"
