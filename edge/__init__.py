"""Edge stage: TFLite inference on CPU and Raspberry Pi without TensorFlow, and its parity check.

Nothing in this package may import TensorFlow, directly or indirectly.
"""
