"""The stack as code: the CloudFormation template, its shared model, the feature parts and their
registry, the functions it deploys and their environments."""
