"""The Neuron backend: lowering through the torch backend to AWS Neuron's compilers.

Targets: ``inf1`` (``torch_neuron.trace``), ``inf2``/``trn1`` (``torch_neuronx.trace``) and
``trn2`` (``torch.compile(backend="neuron")``). Each compiled unit is traced with static
example shapes; a dry run reports, per unit, what would run on a NeuronCore.
"""
