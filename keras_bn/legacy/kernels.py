"""Convolution kernels from legacy files (placeholder: as they are)."""


class KernelFacts:
    @classmethod
    def of(cls, weights, backend, dim_ordering):
        return cls()


def convert(path, source, target, arrays, facts):
    return arrays
